#!/usr/bin/env python3
"""Where the gateway's CPU per message goes, thread by thread (Benchmarks/analysis.md, section 1): a fresh Ganymede,
one kernel, one WebSocket; then either N executes of `1+1` (rtt) or one cell printing N lines (flood). For every
thread of the gateway: CPU time and voluntary / involuntary context switches per execute or per line, read from
/proc/<pid>/task/*/{stat,status} before and after.

    Benchmarks/.venv-bench/drv/bin/python Benchmarks/threads_cpu.py --binary .build/release/ganymede \
        [--mode rtt|flood] [--n 1000]

Thread names: NIO-SGLTN-* are the event loops (HTTP and WebSocket I/O), ZMQbg/IO/0 is libzmq's own I/O thread,
ganymede-zmq the thread that owns the ZeroMQ sockets, and the Swift cooperative pool's threads are "…default-qos"
(swift-subprocess's threads inherit that name, but they do no work while a kernel runs). Starts and stops its own
gateway and kernel (by PID, through gateways.py), 127.0.0.1 only. A diagnostic, not a test.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateways import Ganymede  # noqa: E402
from wsclient import KernelWS  # noqa: E402


def snapshot(pid: int) -> dict[str, tuple[str, float, int, int]]:
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
        except FileNotFoundError:
            continue
        cpu = (int(fields[11]) + int(fields[12])) / tick
        out[tid] = (comm, cpu, int(status["voluntary_ctxt_switches"]), int(status["nonvoluntary_ctxt_switches"]))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--mode", default="rtt", choices=["rtt", "flood"])
    p.add_argument("--n", type=int, default=1000)
    a = p.parse_args()
    gw = Ganymede(os.path.abspath(a.binary))
    gw.start()
    try:
        kid = gw.create_kernel()
        ws = KernelWS(gw.ws_url(kid, "threads"))
        ws.wait_idle(ws.send("shell", "kernel_info_request", {}))
        for _ in range(50):  # warm-up
            ws.wait_idle(ws.execute("1+1"))
        before, t0 = snapshot(gw.pid), time.perf_counter()
        if a.mode == "flood":
            ws.wait_idle(ws.execute(f"for i in range({a.n}):\n    print(i, flush=True)"))
        else:
            for _ in range(a.n):
                ws.wait_idle(ws.execute("1+1"))
        after, wall = snapshot(gw.pid), time.perf_counter() - t0
        unit = "line" if a.mode == "flood" else "execute"
        print(f"{a.mode}: {a.n} {unit}s in {wall:.2f} s; per {unit}:")
        total = [0.0, 0, 0]
        for tid, (comm, cpu, vol, invol) in sorted(after.items(), key=lambda kv: int(kv[0])):
            _, cpu0, vol0, invol0 = before.get(tid, (comm, 0.0, 0, 0))
            d = (cpu - cpu0, vol - vol0, invol - invol0)
            total = [x + y for x, y in zip(total, d)]
            if any(d):
                print(f"  {comm:<18} CPU {d[0] * 1e6 / a.n:6.0f} µs   switches voluntary {d[1] / a.n:5.2f}"
                      f"  involuntary {d[2] / a.n:5.2f}")
        print(f"  {'total':<18} CPU {total[0] * 1e6 / a.n:6.0f} µs   switches voluntary {total[1] / a.n:5.2f}"
              f"  involuntary {total[2] / a.n:5.2f}")
        ws.close()
        gw.delete_kernel(kid)
    finally:
        gw.stop()


if __name__ == "__main__":
    main()
