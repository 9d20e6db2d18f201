#!/usr/bin/env python3
"""Memory after kernels are deleted (Benchmarks/analysis.md, section 4): a fresh Ganymede, then C cycles of N
concurrent starts and N concurrent deletes; after each cycle (2 s settle) the gateway's RSS split (anonymous /
file-backed), its thread count, and the C heap's live and freed bytes from /metrics. A per-cycle leak grows every
cycle; a one-time cost (threads, allocator arenas, caches) grows once.

    EG_UNAUTHORIZED_USERS="" Benchmarks/.venv-bench/drv/bin/python Benchmarks/delete_cycles.py \
        --binary .build/release/ganymede [--kernels 50] [--cycles 4]

Starts and stops its own gateway and kernels (by PID, through gateways.py), 127.0.0.1 only.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import sys
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateways import Ganymede, memory_mb  # noqa: E402


def sample(gw) -> dict:
    m = memory_mb(gw.pid)
    with open(f"/proc/{gw.pid}/status") as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    text = requests.get(f"http://127.0.0.1:{gw.port}/metrics", timeout=10).text
    gauges = {line.split()[0]: float(line.split()[1]) / 1e6 for line in text.splitlines()
              if line.startswith(("ganymede_heap_in_use_bytes", "ganymede_heap_free_bytes"))}
    return {**m, "threads": threads, "heap_live": gauges.get("ganymede_heap_in_use_bytes", float("nan")),
            "heap_free": gauges.get("ganymede_heap_free_bytes", float("nan"))}


def show(label: str, s: dict) -> None:
    print(f"{label:>10}: RSS {s['rss']:6.2f} MB  anonymous {s['anon']:6.2f}  file {s['file']:6.2f}  "
          f"threads {s['threads']:3d}  heap live {s['heap_live']:6.2f}  heap free {s['heap_free']:5.2f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--kernels", type=int, default=50)
    p.add_argument("--cycles", type=int, default=4)
    a = p.parse_args()
    os.environ.setdefault("EG_UNAUTHORIZED_USERS", "")
    gw = Ganymede(a.binary)
    gw.start()
    try:
        # /metrics is admin-only but public here (no auth configured): the gateway serves it on its port.
        time.sleep(2)
        show("idle", sample(gw))
        for c in range(1, a.cycles + 1):
            with cf.ThreadPoolExecutor(a.kernels) as ex:
                kids = list(ex.map(lambda _: gw.create_kernel(), range(a.kernels)))
            show(f"{a.kernels} up", sample(gw))
            with cf.ThreadPoolExecutor(a.kernels) as ex:
                list(ex.map(gw.delete_kernel, kids))
            time.sleep(2)
            show(f"cycle {c}", sample(gw))
    finally:
        gw.stop()


if __name__ == "__main__":
    main()
