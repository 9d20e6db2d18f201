#!/usr/bin/env python3
"""What one kernel's output flood costs another kernel's round trips (Benchmarks/analysis.md, section 2). One
Ganymede, two kernels: kernel A prints in a loop for the whole measurement while kernel B runs N executes of `1+1`
over its own WebSocket; B's execute -> idle times are reported, for the flood batching off
(`GANYMEDE_FLOOD_COALESCE_MS=0`) and at its default, each with and without the neighbour's flood, in alternating
rounds.

    Benchmarks/.venv-bench/drv/bin/python Benchmarks/flood_neighbour.py --binary .build/release/ganymede [--n 300] [--rounds 2]

Starts and stops its own gateways and kernels (by PID, through gateways.py), 127.0.0.1 only. A diagnostic, not a test.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateways import Ganymede, percentile_nearest_rank  # noqa: E402
from wsclient import KernelWS  # noqa: E402


def measure(binary: str, coalesce: str, flood: bool, n: int) -> dict:
    os.environ["GANYMEDE_FLOOD_COALESCE_MS"] = coalesce
    g = Ganymede(binary)
    g.start()
    try:
        a, b = g.create_kernel(), g.create_kernel()
        wa, wb = KernelWS(g.ws_url(a, uuid.uuid4().hex)), KernelWS(g.ws_url(b, uuid.uuid4().hex))
        for w in (wa, wb):
            w.wait_idle(w.send("shell", "kernel_info_request", {}))
        stop = threading.Event()

        def flooder() -> None:
            while not stop.is_set():
                wa.wait_idle(wa.execute("for i in range(5000):\n    print(i, flush=True)"))

        th = threading.Thread(target=flooder)
        if flood:
            th.start()
            time.sleep(1)
        lat = []
        for _ in range(n):
            t0 = time.perf_counter()
            wb.wait_idle(wb.execute("1+1"))
            lat.append((time.perf_counter() - t0) * 1000)
        stop.set()
        if flood:
            th.join()
        wa.close()
        wb.close()
        return {"p50_ms": round(statistics.median(lat), 2), "p90_ms": round(percentile_nearest_rank(lat, 90), 2),
                "p99_ms": round(percentile_nearest_rank(lat, 99), 2)}
    finally:
        g.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--n", type=int, default=300)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    for r in range(a.rounds):
        for coalesce in ("0", "2"):
            for flood in (False, True):
                res = measure(os.path.abspath(a.binary), coalesce, flood, a.n)
                print(f"round {r} batching {coalesce} ms, neighbour {'flooding' if flood else 'idle    '}: "
                      f"B's execute -> idle {res}", flush=True)


if __name__ == "__main__":
    main()
