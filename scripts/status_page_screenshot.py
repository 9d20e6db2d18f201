#!/usr/bin/env python3
"""Regenerates docs/status-page.png: a gateway with a few kernels and a varying workload,
sampled every second (so the charts cover 6 minutes instead of an hour), photographed by
headless Chromium at 1280x900.

    .venv/bin/python scripts/status_page_screenshot.py [--minutes 6] [--out docs/status-page.png]

Needs a built binary ($GANYMEDE_BIN or .build/debug/ganymede) and chromium. Everything it
starts (gateway, kernels, browser) is stopped before it exits.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("GANYMEDE_BIN", str(REPO / ".build/debug/ganymede"))

from conftest import Gateway, KernelTracker, KernelWS  # noqa: E402
from test_status_page import run_chromium  # noqa: E402

TOKEN = "screenshot"


def workload(gw: Gateway, kernel_id: str, stop: threading.Event, phase: float, period: float):
    """Executes small cells at a rate that rises and falls with a period of `period` seconds."""
    with KernelWS(gw, kernel_id) as ws:
        start = time.monotonic()
        while not stop.is_set():
            t = time.monotonic() - start
            level = (1 + math.sin(2 * math.pi * t / period + phase)) / 2
            ws.execute(f"for i in range({1 + int(level * 20)}): print(i, flush=True)", timeout=60)
            stop.wait(0.05 + (1 - level) * 1.5)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=6.0)
    parser.add_argument("--out", default=str(REPO / "docs/status-page.png"))
    args = parser.parse_args()
    total = args.minutes * 60

    work = Path(tempfile.mkdtemp(prefix="ganymede-screenshot-"))
    gw = Gateway(work, name="screenshot", token=TOKEN, args=["--status-sample-interval", "1"],
                 env={"EG_AUTH_TOKEN": TOKEN}).start()
    tracker = KernelTracker(gw)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        # Kernels arrive over time (and one leaves), so the kernel chart has steps.
        plan = [(0.00, "alice", True), (0.10, "bob", True), (0.25, "carol", False), (0.45, "alice", True),
                (0.60, "dave", False)]
        began = time.monotonic()
        ids: dict[str, str] = {}
        for i, (at, user, busy) in enumerate(plan):
            time.sleep(max(0.0, began + at * total - time.monotonic()))
            kid = tracker.create(env={"KERNEL_USERNAME": user})["id"]
            ids[f"{user}{i}"] = kid
            if busy:
                th = threading.Thread(target=workload, args=(gw, kid, stop, i * 1.3, total / 3), daemon=True)
                th.start()
                threads.append(th)
            print(f"[screenshot] {time.monotonic() - began:5.0f}s kernel {kid} for {user}", flush=True)
        time.sleep(max(0.0, began + 0.8 * total - time.monotonic()))
        tracker.gw.delete(f"api/kernels/{ids['carol2']}")
        tracker.ids.remove(ids["carol2"])
        time.sleep(max(0.0, began + total - time.monotonic()))
        # One kernel busy at the moment of the picture.
        with KernelWS(gw, ids["dave4"]) as ws:
            ws.send_execute("import time; time.sleep(20)")
            time.sleep(1.5)
            shot = work / "status.png"
            result = run_chromium([f"--screenshot={shot}", "--window-size=1280,900", gw.url(f"status?token={TOKEN}")],
                                  work)
            if result.returncode != 0 or not shot.exists():
                sys.exit(f"chromium failed: {result.stderr.decode(errors='replace')[-2000:]}")
            Path(args.out).write_bytes(shot.read_bytes())
            print(f"[screenshot] wrote {args.out}", flush=True)
    finally:
        stop.set()
        for th in threads:
            th.join(timeout=70)
        tracker.cleanup()
        gw.stop(check=False)


if __name__ == "__main__":
    main()
