#!/usr/bin/env python3
"""Profile the Ganymede side of the scenarios whose targets were missed: `perf record` on the gateway process
while one client runs executes (round trip) or a print flood; prints the top symbols by self time.

  Benchmarks/.venv-bench/drv/bin/python Benchmarks/profile_ganymede.py --binary .build/release/ganymede \
      --scenario rtt|flood|display [--executes 2000]

Needs `perf` (linux-perf) and permission to attach to the process (root, or perf_event_paranoid <= 1).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateways import Ganymede, cpu_seconds  # noqa: E402
from wsclient import KernelWS  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--scenario", default="rtt", choices=["rtt", "flood", "display"])
    p.add_argument("--executes", type=int, default=2000)
    p.add_argument("--protocol", default="legacy")
    p.add_argument("--out", default="/tmp/ganymede-perf.data")
    a = p.parse_args()
    gw = Ganymede(os.path.abspath(a.binary))
    gw.start()
    perf = None
    try:
        kid = gw.create_kernel()
        ws = KernelWS(gw.ws_url(kid, "prof"), protocol=a.protocol)
        mid = ws.send("shell", "kernel_info_request", {})
        ws.wait_idle(mid)
        perf = subprocess.Popen(["perf", "record", "-F", "2000", "-g", "-o", a.out, "-p", str(gw.pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        c0, t0 = cpu_seconds(gw.pid), time.perf_counter()
        if a.scenario == "rtt":
            for _ in range(a.executes):
                ws.wait_idle(ws.execute("1+1"))
            n, unit = a.executes, "execute"
        else:
            code = ("for i in range(20000):\n    print(i, flush=True)" if a.scenario == "flood" else
                    "from IPython.display import display\nd={'text/plain':'x'*102400}\nfor i in range(100):\n"
                    "    display(d, raw=True)")
            ws.wait_idle(ws.execute(code))
            n, unit = (20000, "line") if a.scenario == "flood" else (100, "display")
        cpu, wall = cpu_seconds(gw.pid) - c0, time.perf_counter() - t0
        print(f"{a.scenario}: {n} in {wall:.2f} s, gateway CPU {cpu * 1e6 / n:.0f} µs per {unit}")
        ws.close()
        gw.delete_kernel(kid)
    finally:
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
        gw.stop()
    rep = subprocess.run(["perf", "report", "-i", a.out, "--no-children", "--sort", "dso,symbol", "--stdio",
                          "--percent-limit", "0.7", "-g", "none"], capture_output=True, text=True)
    print("\n".join(l[:200] for l in rep.stdout.splitlines() if l and not l.startswith("#"))[:12000])


if __name__ == "__main__":
    main()
