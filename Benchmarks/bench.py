#!/usr/bin/env python3
"""Side-by-side benchmark of Ganymede, Enterprise Gateway 3.3, Kernel Gateway 3.0, jupyverse 0.14 and a direct
jupyter_client connection, all on the same ipykernel, in one interleaved run (issue #13).

Every scenario runs the targets round by round, rotating who goes first. Results go to a JSON file that
report.py turns into docs/PERFORMANCE.md and docs/perf/*.png. Benchmarks never fail CI; this is not a test.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
import uuid

import requests

from gateways import (DirectKernel, EnterpriseGateway, Ganymede, Jupyverse, KernelGateway, cpu_seconds,
                      rss_mb, memory_mb)
from wsclient import KernelWS

FLOOD_CODE = "for i in range({n}):\n    print(i, flush=True)"
DISPLAY_CODE = ("from IPython.display import display\n"
                "d = {{'text/plain': 'x' * {size}}}\n"
                "for i in range({n}):\n    display(d, raw=True)")


G_NAME = Ganymede.name  # results of the pool instance are filed under Ganymede's name, in pool_* metrics


def log(*a) -> None:
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def rotate(items: list, r: int) -> list:
    r %= len(items)
    return items[r:] + items[:r]


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.results: dict = {"meta": {}, "errors": []}
        self.gateways = []
        self.direct_kernels: list[DirectKernel] = []
        self.reuse_session = uuid.uuid4().hex

    # -- helpers ---------------------------------------------------------------
    def err(self, where: str, e: BaseException) -> None:
        msg = f"{where}: {type(e).__name__}: {e}"
        log("ERROR", msg)
        self.results["errors"].append(msg)

    def put(self, metric: str, target: str, value) -> None:
        self.results.setdefault(metric, {}).setdefault(target, []).append(value)

    def open_ws(self, gw, kid: str, protocol="legacy", quickack=False) -> KernelWS:
        # By default every WebSocket is a new session, as a new browser tab is; --reuse-session gives all of them
        # one session id (a diagnostic: Ganymede then keeps no replay buffers for closed sessions).
        session = self.reuse_session if self.args.reuse_session else uuid.uuid4().hex
        return KernelWS(gw.ws_url(kid, session), protocol=protocol, quickack=quickack)

    def kernel_info_idle(self, ws: KernelWS) -> None:
        mid = ws.send("shell", "kernel_info_request", {})
        ws.wait_idle(mid)

    def start_via_gateway(self, gw) -> tuple[str, float]:
        """POST → WebSocket open → kernel_info_request → its iopub idle (what a frontend waits for)."""
        t0 = time.perf_counter()
        kid = gw.create_kernel()
        ws = self.open_ws(gw, kid)
        try:
            self.kernel_info_idle(ws)
        finally:
            ws.close()
        return kid, time.perf_counter() - t0

    def start_direct(self) -> tuple[DirectKernel, float]:
        t0 = time.perf_counter()
        dk = DirectKernel()
        dk.start()
        return dk, time.perf_counter() - t0

    # -- scenarios ---------------------------------------------------------------
    def scenario_start(self) -> None:
        n = self.args.starts
        log(f"start: {n} sequential per target, then 8 at once")
        targets = self.gateways + ["direct"]
        for r in range(n):
            for t in rotate(targets, r):
                try:
                    if t == "direct":
                        dk, dt = self.start_direct()
                        self.put("start_s", "direct", dt)
                        dk.stop()
                    else:
                        kid, dt = self.start_via_gateway(t)
                        self.put("start_s", t.name, dt)
                        t0 = time.perf_counter()
                        t.delete_kernel(kid)
                        self.put("delete_s", t.name, time.perf_counter() - t0)
                except Exception as e:
                    self.err(f"start {getattr(t, 'name', t)}", e)
        for t in targets:
            try:
                t0 = time.perf_counter()
                with cf.ThreadPoolExecutor(8) as ex:
                    if t == "direct":
                        futs = [ex.submit(self.start_direct) for _ in range(8)]
                        res = [f.result() for f in futs]
                        wall = time.perf_counter() - t0
                        for dk, dt in res:
                            self.put("start8_each_s", "direct", dt)
                            dk.stop()
                    else:
                        futs = [ex.submit(self.start_via_gateway, t) for _ in range(8)]
                        res = [f.result() for f in futs]
                        wall = time.perf_counter() - t0
                        for kid, dt in res:
                            self.put("start8_each_s", t.name, dt)
                        list(ex.map(t.delete_kernel, [kid for kid, _ in res]))
                self.put("start8_wall_s", getattr(t, "name", t), wall)
            except Exception as e:
                self.err(f"start8 {getattr(t, 'name', t)}", e)

    def pool_ready_ids(self, gw, exclude: set[str]) -> set[str]:
        """Kernels the pool holds ready: listed, not handed to us, past `starting` (the REST model says `starting`
        until the kernel has answered its first kernel_info, and the pool takes a kernel in only after that)."""
        return {k["id"] for k in gw.list_kernels()
                if k["id"] not in exclude and k.get("execution_state") not in ("starting", "restarting", "terminating",
                                                                                "dead", "unknown")}

    def wait_pool_full(self, gw, size: int, exclude: set[str], timeout: float) -> tuple[set[str], float]:
        t0 = time.perf_counter()
        while True:
            ready = self.pool_ready_ids(gw, exclude)
            if len(ready) >= size:
                # Let the refill's kernel finish its own start-up chatter before measuring, then look again.
                time.sleep(self.args.pool_settle)
                ready = self.pool_ready_ids(gw, exclude)
                if len(ready) >= size:
                    return ready, time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"pool of {size} not full after {timeout:.0f}s ({len(ready)} ready)")
            time.sleep(0.05)

    def scenario_pool_start(self) -> None:
        """A separate Ganymede with a prespawned pool (KG_PRESPAWN_COUNT): the `start` measurement, each start taken
        from a full pool (the driver waits for the refill between starts), and DELETE of the pooled kernel."""
        a = self.args
        if "ganymede" not in a.targets.split(","):
            log("pool_start: skipped (Ganymede is not among the targets)")
            return
        size, n = a.pool_size, a.starts
        log(f"pool start: Ganymede with KG_PRESPAWN_COUNT={size}, {n} sequential starts from a full pool")
        gw = Ganymede(a.binary, prespawn=size)
        meta = self.results["meta"].setdefault("pool_start", {})
        meta.update({"pool_size": size, "starts": n, "settle_s": a.pool_settle})
        try:
            gw.start()
            log(f"  {gw.name} up on port {gw.port}, pid {gw.pid}")
            _, fill = self.wait_pool_full(gw, size, set(), 120 + 30 * size)
            meta["initial_fill_s"] = fill
            self.put("pool_rss_full_mb", G_NAME, rss_mb(gw.pid))
            gw.note_kernels()
            for i in range(n):
                try:
                    ready, refill = self.wait_pool_full(gw, size, set(), 120)
                    if i:
                        self.put("pool_refill_wait_s", G_NAME, refill)
                    t0 = time.perf_counter()
                    kid = gw.create_kernel()
                    t_post = time.perf_counter() - t0
                    ws = self.open_ws(gw, kid)
                    try:
                        self.kernel_info_idle(ws)
                    finally:
                        ws.close()
                    dt = time.perf_counter() - t0
                    pooled = kid in ready
                    self.put("pool_start_s", G_NAME, dt)
                    self.put("pool_post_s", G_NAME, t_post)
                    self.put("pool_pooled", G_NAME, pooled)
                    gw.note_kernels()
                    t0 = time.perf_counter()
                    gw.delete_kernel(kid)
                    self.put("pool_delete_s", G_NAME, time.perf_counter() - t0)
                    log(f"  pool start {i + 1}/{n}: POST {t_post * 1000:.1f} ms, → idle {dt * 1000:.1f} ms, "
                        f"{'pooled' if pooled else 'NOT pooled'}")
                except Exception as e:
                    self.err(f"pool start {gw.name}", e)
        except Exception as e:
            self.err(f"pool start {gw.name}", e)
        finally:
            left = gw.stop()
            if left:
                self.results["meta"].setdefault("kernels_left_by_gateway", {})[gw.name] = len(left)

    def scenario_restart(self) -> None:
        log("restart latency")
        kids = {}
        for gw in self.gateways:
            try:
                kids[gw.name] = gw.create_kernel()
            except Exception as e:
                self.err(f"restart setup {gw.name}", e)
        for r in range(self.args.restarts):
            for gw in rotate(self.gateways, r):
                if gw.name not in kids:
                    continue
                try:
                    t0 = time.perf_counter()
                    gw.restart_kernel(kids[gw.name])
                    t1 = time.perf_counter()
                    ws = self.open_ws(gw, kids[gw.name])
                    self.kernel_info_idle(ws)
                    ws.close()
                    self.put("restart_s", gw.name, t1 - t0)
                    self.put("restart_idle_s", gw.name, time.perf_counter() - t0)
                except Exception as e:
                    self.err(f"restart {gw.name}", e)
        for gw in self.gateways:
            if gw.name in kids:
                try:
                    gw.delete_kernel(kids[gw.name])
                except Exception as e:
                    self.err(f"restart cleanup {gw.name}", e)

    def rtt_chunk_ws(self, gw, kid: str, protocol: str, quickack: bool, n: int) -> None:
        ws = self.open_ws(gw, kid, protocol=protocol, quickack=quickack)
        try:
            self.kernel_info_idle(ws)
            tag = f"{protocol}/{'quickack' if quickack else 'ordinary'}"
            if ws.protocol != protocol:
                self.results["meta"].setdefault("protocol_fallback", {})[gw.name] = ws.protocol
            for _ in range(n):
                t0 = time.perf_counter()
                mid = ws.execute("1+1")
                t_reply, t_idle = ws.wait_idle(mid)
                self.put(f"rtt_reply_ms/{tag}", gw.name, (t_reply - t0) * 1000)
                self.put(f"rtt_idle_ms/{tag}", gw.name, (t_idle - t0) * 1000)
        finally:
            ws.close()

    def rtt_chunk_direct(self, dk: DirectKernel, n: int) -> None:
        for _ in range(n):
            t0 = time.perf_counter()
            msg = dk.session.send(dk.shell, "execute_request", {
                "code": "1+1", "silent": False, "store_history": True, "user_expressions": {},
                "allow_stdin": False, "stop_on_error": True})
            mid = msg["header"]["msg_id"]
            t_reply = t_idle = None
            while t_reply is None or t_idle is None:
                for sock, _ in dk.poller.poll(30000):
                    m = dk.recv(sock)
                    if m["parent_header"].get("msg_id") != mid:
                        continue
                    if sock is dk.shell:
                        t_reply = time.perf_counter()
                    elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                        t_idle = time.perf_counter()
            self.put("rtt_reply_ms/direct", "direct", (t_reply - t0) * 1000)
            self.put("rtt_idle_ms/direct", "direct", (t_idle - t0) * 1000)

    def scenario_rtt(self) -> None:
        total, chunk = self.args.rtt, self.args.rtt_chunk
        log(f"round trip: {total} executes per protocol and client kind, chunks of {chunk}")
        kids = {}
        for gw in self.gateways:
            try:
                kids[gw.name] = gw.create_kernel()
            except Exception as e:
                self.err(f"rtt setup {gw.name}", e)
        dk, _ = self.start_direct()
        combos = [(p, q) for p in ("legacy", "v1") for q in (True, False)]
        try:
            targets = self.gateways + ["direct"]
            for r in range(total // chunk):
                for t in rotate(targets, r):
                    try:
                        if t == "direct":
                            self.rtt_chunk_direct(dk, chunk)
                            continue
                        if t.name not in kids:
                            continue
                        c0 = cpu_seconds(t.pid)
                        for p, q in rotate(combos, r):
                            self.rtt_chunk_ws(t, kids[t.name], p, q, chunk)
                        self.put("cpu_per_execute_ms", t.name,
                                 (cpu_seconds(t.pid) - c0) * 1000 / (chunk * len(combos)))
                    except Exception as e:
                        self.err(f"rtt {getattr(t, 'name', t)}", e)
                log(f"  rtt chunk {r + 1}/{total // chunk}")
        finally:
            dk.stop()
            for gw in self.gateways:
                if gw.name in kids:
                    try:
                        gw.delete_kernel(kids[gw.name])
                    except Exception as e:
                        self.err(f"rtt cleanup {gw.name}", e)

    def flood_ws(self, gw, kid: str, code: str, quiet: float) -> dict:
        """Run code, count stream lines and display bytes until idle (or `quiet` s without a message)."""
        ws = self.open_ws(gw, kid)
        try:
            self.kernel_info_idle(ws)
            c0 = cpu_seconds(gw.pid)
            r0 = rss_mb(gw.pid)
            t0 = time.perf_counter()
            mid = ws.execute(code)
            lines = displays = dbytes = 0
            idle = False
            t_last = t0
            ws.settimeout(quiet)
            try:
                while True:
                    m = ws.recv()
                    if m.parent_id != mid:
                        continue
                    t_last = time.perf_counter()
                    if m.msg_type == "stream":
                        lines += m.content["text"].count("\n")
                    elif m.msg_type == "display_data":
                        displays += 1
                        dbytes += m.size
                    elif m.msg_type == "status" and m.content.get("execution_state") == "idle":
                        idle = True
                        break
            except Exception:
                pass  # timed out: the final idle was lost
            return {"elapsed": t_last - t0, "lines": lines, "displays": displays, "bytes": dbytes, "idle": idle,
                    "cpu": cpu_seconds(gw.pid) - c0, "rss_peak_delta": rss_mb(gw.pid) - r0}
        finally:
            ws.close()

    def flood_direct(self, dk: DirectKernel, code: str, quiet: float) -> dict:
        t0 = time.perf_counter()
        msg = dk.session.send(dk.shell, "execute_request", {
            "code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True})
        mid = msg["header"]["msg_id"]
        lines = displays = dbytes = 0
        idle = False
        t_last = t0
        while not idle:
            ev = dk.poller.poll(int(quiet * 1000))
            if not ev:
                break
            for sock, _ in ev:
                frames = sock.recv_multipart(copy=True)
                if sock is not dk.iopub:
                    continue
                _, parts = dk.session.feed_identities(frames, copy=True)
                m = dk.session.deserialize(parts, content=True, copy=True)
                if m["parent_header"].get("msg_id") != mid:
                    continue
                t_last = time.perf_counter()
                if m["msg_type"] == "stream":
                    lines += m["content"]["text"].count("\n")
                elif m["msg_type"] == "display_data":
                    displays += 1
                    dbytes += sum(len(p) for p in parts)
                elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                    idle = True
        return {"elapsed": t_last - t0, "lines": lines, "displays": displays, "bytes": dbytes, "idle": idle}

    def scenario_floods(self) -> None:
        a = self.args
        log(f"floods: {a.flood_lines} prints and {a.displays} x {a.display_kb} KB display_data, {a.flood_rounds} rounds")
        flood = FLOOD_CODE.format(n=a.flood_lines)
        disp = DISPLAY_CODE.format(n=a.displays, size=a.display_kb * 1024)
        kids = {}
        for gw in self.gateways:
            try:
                kids[gw.name] = gw.create_kernel()
            except Exception as e:
                self.err(f"flood setup {gw.name}", e)
        dk, _ = self.start_direct()
        targets = self.gateways + ["direct"]
        try:
            for r in range(a.flood_rounds):
                for kind, code in (("print", flood), ("display", disp)):
                    for t in rotate(targets, r):
                        try:
                            if t == "direct":
                                res = self.flood_direct(dk, code, 20)
                                name = "direct"
                            elif t.name in kids:
                                res = self.flood_ws(t, kids[t.name], code, 20)
                                name = t.name
                            else:
                                continue
                            self.put(f"flood_{kind}", name, res)
                            log(f"  {kind} {name}: {res}")
                        except Exception as e:
                            self.err(f"flood {kind} {getattr(t, 'name', t)}", e)
        finally:
            dk.stop()
            for gw in self.gateways:
                if gw.name in kids:
                    try:
                        gw.delete_kernel(kids[gw.name])
                    except Exception as e:
                        self.err(f"flood cleanup {gw.name}", e)

    def fanout_ws(self, gw, kid: str, n_clients: int, lines: int) -> dict:
        clients = [self.open_ws(gw, kid) for _ in range(n_clients)]
        for c in clients:
            self.kernel_info_idle(c)
        mid_box: dict = {}
        start = threading.Event()
        done: list = [None] * n_clients
        counts = [0] * n_clients

        def reader(i: int) -> None:
            c = clients[i]
            c.settimeout(60)
            start.wait()
            try:
                while True:
                    m = c.recv()
                    if m.parent_id != mid_box["id"]:
                        continue
                    if m.msg_type == "stream":
                        counts[i] += m.content["text"].count("\n")
                    elif m.msg_type == "status" and m.content.get("execution_state") == "idle":
                        done[i] = time.perf_counter()
                        return
            except Exception:
                return

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(n_clients)]
        for th in threads:
            th.start()
        c0 = cpu_seconds(gw.pid)
        t0 = time.perf_counter()
        mid_box["id"] = clients[0].execute(FLOOD_CODE.format(n=lines))
        start.set()
        for th in threads:
            th.join(90)
        for c in clients:
            c.close()
        complete = sum(1 for i in range(n_clients) if done[i] is not None and counts[i] == lines)
        last = max((d for d in done if d is not None), default=time.perf_counter()) - t0
        return {"last_done_s": last, "complete": complete, "clients": n_clients,
                "cpu": cpu_seconds(gw.pid) - c0}

    def fanout_direct(self, dk: DirectKernel, n_clients: int, lines: int) -> dict:
        import zmq
        subs = []
        for _ in range(n_clients):
            s = dk.km.connect_iopub()
            s.setsockopt(zmq.SUBSCRIBE, b"")
            subs.append(s)
        time.sleep(1.0)  # ZeroMQ slow joiner: let every SUB finish its subscription
        dk.drain()
        mid_box: dict = {}
        start = threading.Event()
        done: list = [None] * n_clients
        counts = [0] * n_clients

        from jupyter_client.session import Session

        def reader(i: int) -> None:
            s = subs[i]
            # One Session per subscriber: a shared one's digest history rejects the same message seen twice.
            sess = Session(key=dk.session.key, signature_scheme=dk.session.signature_scheme)
            start.wait()
            while s.poll(60000):
                _, parts = sess.feed_identities(s.recv_multipart(), copy=True)
                m = sess.deserialize(parts, content=True, copy=True)
                if m["parent_header"].get("msg_id") != mid_box["id"]:
                    continue
                if m["msg_type"] == "stream":
                    counts[i] += m["content"]["text"].count("\n")
                elif m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                    done[i] = time.perf_counter()
                    return

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(n_clients)]
        for th in threads:
            th.start()
        t0 = time.perf_counter()
        msg = dk.session.send(dk.shell, "execute_request", {
            "code": FLOOD_CODE.format(n=lines), "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True})
        mid_box["id"] = msg["header"]["msg_id"]
        start.set()
        for th in threads:
            th.join(90)
        for s in subs:
            s.close(0)
        dk.drain()
        complete = sum(1 for i in range(n_clients) if done[i] is not None and counts[i] == lines)
        last = max((d for d in done if d is not None), default=time.perf_counter()) - t0
        return {"last_done_s": last, "complete": complete, "clients": n_clients}

    def scenario_fanout(self) -> None:
        a = self.args
        log(f"fan-out: {a.fanout_clients} WebSockets x {a.fanout_lines} lines, {a.fanout_rounds} rounds")
        kids = {}
        for gw in self.gateways:
            try:
                kids[gw.name] = gw.create_kernel()
            except Exception as e:
                self.err(f"fanout setup {gw.name}", e)
        dk, _ = self.start_direct()
        targets = self.gateways + ["direct"]
        try:
            for r in range(a.fanout_rounds):
                for t in rotate(targets, r):
                    try:
                        if t == "direct":
                            res, name = self.fanout_direct(dk, a.fanout_clients, a.fanout_lines), "direct"
                        elif t.name in kids:
                            res, name = self.fanout_ws(t, kids[t.name], a.fanout_clients, a.fanout_lines), t.name
                        else:
                            continue
                        self.put("fanout", name, res)
                        log(f"  fanout {name}: {res}")
                    except Exception as e:
                        self.err(f"fanout {getattr(t, 'name', t)}", e)
        finally:
            dk.stop()
            for gw in self.gateways:
                if gw.name in kids:
                    try:
                        gw.delete_kernel(kids[gw.name])
                    except Exception as e:
                        self.err(f"fanout cleanup {gw.name}", e)

    def scenario_memory(self) -> None:
        a = self.args
        log(f"memory: {a.mem_kernels} kernels with a WebSocket each, {a.mem_cycles} cycles")
        for cyc in range(a.mem_cycles):
            for gw in rotate(self.gateways, cyc):
                try:
                    before = rss_mb(gw.pid)
                    kids = [gw.create_kernel() for _ in range(a.mem_kernels)]
                    wss = [self.open_ws(gw, k) for k in kids]
                    for w in wss:
                        self.kernel_info_idle(w)
                    time.sleep(1)
                    with_k = rss_mb(gw.pid)
                    gw.note_kernels()
                    for w in wss:
                        w.close()
                    for k in kids:
                        gw.delete_kernel(k)
                    time.sleep(2)
                    after = rss_mb(gw.pid)
                    self.put("mem_cycle", gw.name, {"before": before, "with": with_k, "after": after,
                                                    "n": a.mem_kernels})
                    log(f"  mem {gw.name}: {before:.1f} -> {with_k:.1f} -> {after:.1f} MB")
                except Exception as e:
                    self.err(f"memory {gw.name}", e)

    def scenario_concurrent_starts(self) -> None:
        """N concurrent POSTs while a probe GETs /api every 20 ms; then RSS with N kernels and after deleting."""
        n = self.args.concurrent_starts
        log(f"concurrency: {n} concurrent starts with an /api probe")
        for gw in self.gateways:
            stop = threading.Event()
            probe: list[float] = []
            probe_errors = [0]

            def prober() -> None:
                s = requests.Session()
                while not stop.is_set():
                    t0 = time.perf_counter()
                    try:
                        if s.get(gw.base + gw.health_path, timeout=30).status_code != 200:
                            probe_errors[0] += 1
                    except requests.RequestException:
                        probe_errors[0] += 1
                    probe.append((time.perf_counter() - t0) * 1000)
                    time.sleep(0.02)

            th = threading.Thread(target=prober)
            try:
                before = rss_mb(gw.pid)
                mem_before = memory_mb(gw.pid)
                th.start()
                t0 = time.perf_counter()
                kids, errors = [], 0
                with cf.ThreadPoolExecutor(n) as ex:
                    for f in [ex.submit(gw.create_kernel) for _ in range(n)]:
                        try:
                            kids.append(f.result())
                        except Exception as e:
                            errors += 1
                            self.err(f"concurrent start {gw.name}", e)
                wall = time.perf_counter() - t0
                time.sleep(2)
                with_k = rss_mb(gw.pid)
                gw.note_kernels()
                with cf.ThreadPoolExecutor(n) as ex:
                    for f in [ex.submit(gw.delete_kernel, k) for k in kids]:
                        try:
                            f.result()
                        except Exception as e:
                            errors += 1
                            self.err(f"concurrent delete {gw.name}", e)
                stop.set()
                th.join()
                time.sleep(2)
                after = rss_mb(gw.pid)
                mem_after = memory_mb(gw.pid)
                res = {"n": n, "ok": len(kids), "errors": errors, "wall_s": wall, "probe_p50_ms": pct(probe, 50),
                       "probe_p99_ms": pct(probe, 99), "probe_max_ms": max(probe, default=float("nan")),
                       "probe_errors": probe_errors[0], "probes": len(probe),
                       "rss_before": before, "rss_with": with_k, "rss_after": after,
                       "mem_before": mem_before, "mem_after": mem_after}
                self.put("concurrent_starts", gw.name, res)
                log(f"  concurrent {gw.name}: {res}")
            except Exception as e:
                stop.set()
                self.err(f"concurrent {gw.name}", e)
            finally:
                stop.set()
                if th.is_alive():
                    th.join()

    def scenario_many_ws(self) -> None:
        """W WebSockets spread over K kernels (asyncio `websockets`), one execute per kernel seen by all."""
        a = self.args
        log(f"scale: {a.ws_total} WebSockets over {a.ws_kernels} kernels")
        import asyncio
        import websockets

        async def run(gw) -> dict:
            kids = [gw.create_kernel() for _ in range(a.ws_kernels)]
            gw.note_kernels()
            per = a.ws_total // a.ws_kernels
            sem = asyncio.Semaphore(32)
            conns: list = []
            connect_errors = 0

            async def connect(kid):
                nonlocal connect_errors
                async with sem:
                    try:
                        sid = uuid.uuid4().hex
                        c = await websockets.connect(gw.ws_url(kid, sid), max_size=None,
                                                     open_timeout=120, ping_interval=None)
                        c.bench_session = sid
                        conns.append((kid, c))
                    except Exception:
                        connect_errors += 1

            t0 = time.perf_counter()
            await asyncio.gather(*[connect(k) for k in kids for _ in range(per)])
            t_conn = time.perf_counter() - t0
            rss_with = rss_mb(gw.pid)
            mids = {}
            first = {}
            for kid, c in conns:
                first.setdefault(kid, c)
            t1 = time.perf_counter()
            for kid, c in first.items():
                h = {"msg_id": uuid.uuid4().hex, "username": "bench", "session": c.bench_session, "date": "",
                     "msg_type": "execute_request", "version": "5.3"}
                mids[kid] = h["msg_id"]
                await c.send(json.dumps({"header": h, "parent_header": {}, "metadata": {}, "channel": "shell",
                                         "content": {"code": "print('hello')", "silent": False},
                                         "buffers": []}))

            async def wait(kid, c):
                try:
                    while True:
                        m = json.loads(await asyncio.wait_for(c.recv(), 60))
                        if (m.get("parent_header") or {}).get("msg_id") == mids[kid] and \
                                m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                            return True
                except Exception:
                    return False

            oks = await asyncio.gather(*[wait(k, c) for k, c in conns])
            t_all = time.perf_counter() - t1
            await asyncio.gather(*[c.close() for _, c in conns], return_exceptions=True)
            for k in kids:
                gw.delete_kernel(k)
            return {"ws": a.ws_total, "kernels": a.ws_kernels, "connected": len(conns),
                    "connect_errors": connect_errors, "connect_s": t_conn, "all_idle_s": t_all,
                    "complete": sum(oks), "rss_with": rss_with}

        for gw in self.gateways:
            try:
                res = asyncio.run(run(gw))
                self.put("many_ws", gw.name, res)
                log(f"  many ws {gw.name}: {res}")
            except Exception as e:
                self.err(f"many ws {gw.name}", e)

    # -- driver --------------------------------------------------------------------
    def run(self) -> None:
        a = self.args
        meta = self.results["meta"]
        meta["date_utc"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        meta["args"] = vars(a)
        meta["machine"] = machine_description()
        all_gw = {"ganymede": lambda: Ganymede(a.binary), "eg": EnterpriseGateway, "kg": KernelGateway,
                  "jupyverse": Jupyverse, "ganymede_b": lambda: Ganymede(a.binary_b, label="B")}
        unknown = [k for k in a.targets.split(",") if k not in all_gw]
        if unknown:  # before anything starts: a typo must not leave gateways running
            raise SystemExit(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(all_gw)} (the direct client always runs)")
        for key in a.targets.split(","):
            gw = all_gw[key]()
            try:
                gw.start()
                self.gateways.append(gw)
                log(f"{gw.name} up on port {gw.port}, pid {gw.pid}")
            except Exception as e:
                self.err(f"starting {gw.name}", e)
                gw.stop()
        time.sleep(2)
        for gw in self.gateways:
            self.put("rss_idle_mb", gw.name, rss_mb(gw.pid))
            self.put("mem_idle", gw.name, memory_mb(gw.pid))
        scenarios = [s for s in a.scenarios.split(",") if s]
        try:
            for s in scenarios:
                t0 = time.time()
                try:
                    getattr(self, f"scenario_{s}")()
                except Exception as e:
                    self.err(f"scenario {s}", e)
                    traceback.print_exc()
                meta.setdefault("scenario_seconds", {})[s] = round(time.time() - t0, 1)
                self.save()
            for gw in self.gateways:
                self.put("rss_end_mb", gw.name, rss_mb(gw.pid))
                self.put("mem_end", gw.name, memory_mb(gw.pid))
                self.put("cpu_total_s", gw.name, cpu_seconds(gw.pid))
        finally:
            for gw in self.gateways:
                left = gw.stop()
                if left:
                    self.results["meta"].setdefault("kernels_left_by_gateway", {})[gw.name] = len(left)
            self.save()

    def save(self) -> None:
        os.makedirs(os.path.dirname(self.args.out), exist_ok=True)
        with open(self.args.out, "w") as f:
            json.dump(self.results, f, indent=1)


def machine_description() -> dict:
    def sh(cmd: str) -> str:
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return ""
    model = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    mem = sh("grep MemTotal /proc/meminfo | awk '{print $2}'")
    return {"cpu": model, "cores": os.cpu_count(), "mem_gib": round(int(mem or 0) / 1024 / 1024, 1),
            "kernel": platform.release(), "os": sh(". /etc/os-release && echo $PRETTY_NAME"),
            "python": platform.python_version(), "load_at_start": os.getloadavg(),
            "swift": sh("swift --version 2>&1 | head -1")}


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--binary", default=os.path.join(here, "..", ".build", "release", "ganymede"))
    p.add_argument("--binary-b", help="a second Ganymede build, run as target `ganymede_b` (A/B of two commits)")
    p.add_argument("--out", default=os.path.join(here, "results", "results.json"))
    p.add_argument("--targets", default="ganymede,eg,kg,jupyverse")
    p.add_argument("--scenarios", default="start,pool_start,rtt,floods,fanout,memory,restart,concurrent_starts,many_ws")
    p.add_argument("--starts", type=int, default=8, help="sequential starts per target (start) and from the pool (pool_start)")
    p.add_argument("--pool-size", type=int, default=4, help="pool_start: KG_PRESPAWN_COUNT of the pooled Ganymede")
    p.add_argument("--pool-settle", type=float, default=0.5,
                   help="pool_start: seconds to wait once the pool looks full before measuring (then checked again)")
    p.add_argument("--restarts", type=int, default=5)
    p.add_argument("--rtt", type=int, default=1000)
    p.add_argument("--rtt-chunk", type=int, default=100)
    p.add_argument("--flood-lines", type=int, default=20000)
    p.add_argument("--displays", type=int, default=100)
    p.add_argument("--display-kb", type=int, default=100)
    p.add_argument("--flood-rounds", type=int, default=2)
    p.add_argument("--fanout-clients", type=int, default=20)
    p.add_argument("--fanout-lines", type=int, default=500)
    p.add_argument("--fanout-rounds", type=int, default=2)
    p.add_argument("--mem-kernels", type=int, default=10)
    p.add_argument("--mem-cycles", type=int, default=2)
    p.add_argument("--concurrent-starts", type=int, default=50)
    p.add_argument("--ws-total", type=int, default=1000)
    p.add_argument("--ws-kernels", type=int, default=20)
    p.add_argument("--reuse-session", action="store_true",
                   help="one session id for every WebSocket (diagnostic; the default opens a new session per WebSocket)")
    a = p.parse_args()
    a.binary = os.path.abspath(a.binary)
    # SIGTERM unwinds like Ctrl-C so every gateway and kernel started so far is stopped by PID.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if "ganymede_b" in a.targets.split(","):
        if not a.binary_b or not os.access(a.binary_b, os.X_OK):
            sys.exit("target ganymede_b needs --binary-b pointing at an executable Ganymede build")
        a.binary_b = os.path.abspath(a.binary_b)
    if "ganymede" in a.targets and not os.access(a.binary, os.X_OK):
        sys.exit(f"no Ganymede binary at {a.binary}: build it with `swift build -c release` or pass --binary")
    Bench(a).run()


if __name__ == "__main__":
    main()
