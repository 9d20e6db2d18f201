#!/usr/bin/env python3
"""How responsive can any gateway be while 50 Python kernels start on this machine? (Benchmarks/analysis.md,
section 5.) The `/api` probe of the concurrent-starts scenario (a GET every 20 ms) runs against one idle Ganymede in
two kinds of round, alternated:

- `gateway`: Ganymede itself starts the N kernels (N concurrent POSTs), as in the benchmark;
- `floor`: jupyter_client starts N kernels directly (N threads, no gateway involved) while Ganymede sits idle.

The floor round gives the probe's latency when the only thing Ganymede does is answer it: what is left over is the
machine, 2 cores shared with N kernels importing ipykernel. Starts and stops its own gateway and kernels (by PID),
127.0.0.1 only. A diagnostic, not a test.

    Benchmarks/.venv-bench/drv/bin/python Benchmarks/probe_floor.py --binary .build/release/ganymede [--n 50] [--rounds 2]
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import shutil
import sys
import tempfile
import threading
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateways import Ganymede, percentile_nearest_rank  # noqa: E402
from jupyter_client import KernelManager  # noqa: E402


def start_direct(km: KernelManager) -> bool:
    """Starts a kernel with jupyter_client and waits for its kernel_info reply. IPC transport: concurrent jupyter_client
    starts pick TCP ports that race each other ("Address already in use"), and the floor is about CPU, not ports."""
    try:
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=120)
        finally:
            kc.stop_channels()
        return True
    except Exception as e:  # a kernel that did not come up is counted, and the round goes on
        print(f"direct start failed: {e}", file=sys.stderr)
        return False


def probed(gw: Ganymede, work) -> dict:
    stop = threading.Event()
    lat: list[float] = []
    errors = [0]

    def prober() -> None:
        s = requests.Session()
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                if s.get(gw.base + "/api", timeout=30).status_code != 200:
                    errors[0] += 1
            except requests.RequestException:
                errors[0] += 1
            lat.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.02)

    th = threading.Thread(target=prober)
    th.start()
    t0 = time.perf_counter()
    try:
        work()
    finally:
        wall = time.perf_counter() - t0
        stop.set()
        th.join()
    return {"wall_s": round(wall, 2), "probes": len(lat), "errors": errors[0],
            "p50_ms": round(percentile_nearest_rank(lat, 50), 1), "p90_ms": round(percentile_nearest_rank(lat, 90), 1),
            "p99_ms": round(percentile_nearest_rank(lat, 99), 1), "max_ms": round(max(lat), 1)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    gw = Ganymede(os.path.abspath(a.binary))
    gw.start()
    try:
        for r in range(1, a.rounds + 1):
            for kind in (("gateway", "floor") if r % 2 else ("floor", "gateway")):
                if kind == "gateway":
                    kids: list[str] = []

                    def work() -> None:
                        with cf.ThreadPoolExecutor(a.n) as ex:
                            kids.extend(ex.map(lambda _: gw.create_kernel(), range(a.n)))
                    res = probed(gw, work)
                    with cf.ThreadPoolExecutor(a.n) as ex:
                        list(ex.map(gw.delete_kernel, kids))
                else:
                    runtime = tempfile.mkdtemp(prefix="probe-floor-")
                    kms = [KernelManager(kernel_name="python3", transport="ipc",
                                         ip=os.path.join(runtime, f"k{i}")) for i in range(a.n)]
                    ok: list[bool] = []

                    def work() -> None:
                        with cf.ThreadPoolExecutor(a.n) as ex:
                            ok.extend(ex.map(start_direct, kms))
                    try:
                        res = probed(gw, work)
                        res["started"] = sum(ok)
                    finally:
                        with cf.ThreadPoolExecutor(a.n) as ex:
                            list(ex.map(lambda km: km.shutdown_kernel(now=True) if km.has_kernel else None, kms))
                        shutil.rmtree(runtime, ignore_errors=True)
                print(f"round {r} {kind:<8} {res}", flush=True)
                time.sleep(3)
    finally:
        gw.stop()


if __name__ == "__main__":
    main()
