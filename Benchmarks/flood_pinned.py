#!/usr/bin/env python3
"""Print flood with the kernel on two CPUs and pinned to one, alternately (Benchmarks/analysis.md, section 2).

One gateway (Ganymede or jupyverse), one kernel, one WebSocket; each round runs a 20,000-line print loop with the
kernel's threads allowed on CPUs 0-1 (`taskset -a -p 0x3`) and then confined to CPU 0 (`0x1`), and prints the rate,
the kernel's CPU time and its context switches. ipykernel hands every flushed print from its main thread to its IOPub
thread and waits; on two free cores that handoff is a cross-core wake-up per line, on one core it is not.

    EG_UNAUTHORIZED_USERS="" Benchmarks/.venv-bench/drv/bin/python Benchmarks/flood_pinned.py \
        --binary .build/release/ganymede --gateway ganymede|jupyverse [--rounds 3]

Needs `taskset` (util-linux) and a machine with at least two CPUs. Starts and stops its own gateway and kernel (by
PID, through gateways.py), 127.0.0.1 only. A diagnostic, not a test.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateways import Ganymede, Jupyverse, context_switches, cpu_seconds, kernel_pid  # noqa: E402
from wsclient import KernelWS  # noqa: E402

LINES = 20000


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--binary", default="")
    p.add_argument("--gateway", default="ganymede", choices=["ganymede", "jupyverse"])
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    g = Ganymede(os.path.abspath(a.binary)) if a.gateway == "ganymede" else Jupyverse()
    g.start()
    try:
        kid = g.create_kernel()
        ws = KernelWS(g.ws_url(kid, uuid.uuid4().hex))
        ws.wait_idle(ws.send("shell", "kernel_info_request", {}))
        kp = kernel_pid(g.pid)
        if kp is None:
            sys.exit("kernel process not found")
        for rnd in range(a.rounds):
            for mask in ("0x3", "0x1"):
                subprocess.run(["taskset", "-a", "-p", mask, str(kp)], stdout=subprocess.DEVNULL, check=True)
                k0, s0, t0 = cpu_seconds(kp), context_switches(kp), time.perf_counter()
                ws.wait_idle(ws.execute(f"for i in range({LINES}):\n    print(i, flush=True)"))
                el, s1 = time.perf_counter() - t0, context_switches(kp)
                print(f"{g.name} round {rnd} kernel cpus {mask}: {el:.2f} s ({LINES / el:,.0f} lines/s), "
                      f"kernel cpu {cpu_seconds(kp) - k0:.2f} s, kernel switches vol {s1[0] - s0[0]} "
                      f"invol {s1[1] - s0[1]}", flush=True)
        ws.close()
    finally:
        g.stop()


if __name__ == "__main__":
    main()
