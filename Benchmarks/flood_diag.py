#!/usr/bin/env python3
"""Print-flood diagnostic (Benchmarks/analysis.md, section 2): Ganymede and jupyverse alternating, N prints per
round; per round: lines, messages, elapsed, the client's, gateway's and kernel's CPU, and the context switches of the
gateway and the kernel (summed over their threads from /proc/<pid>/task/*/status).

    EG_UNAUTHORIZED_USERS="" ROUNDS=2 BIN=.build/release/ganymede \
        Benchmarks/.venv-bench/drv/bin/python Benchmarks/flood_diag.py [ganymede] [jupyverse]

Starts and stops its own gateways (by PID, through gateways.py), 127.0.0.1 only.
"""
import os, sys, time, uuid, resource

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateways import Ganymede, Jupyverse, cpu_seconds, kernel_pid
from gateways import context_switches as ctx
from wsclient import KernelWS

N = int(os.environ.get("N", "20000"))
CODE = f"for i in range({N}):\n    print(i, flush=True)"
which = sys.argv[1:] or ["ganymede", "jupyverse"]
gws = []
for w in which:
    g = Ganymede(os.environ.get("BIN", ".build/release/ganymede")) if w == "ganymede" else Jupyverse()
    g.start(); gws.append(g)
try:
    kids = {g.name: g.create_kernel() for g in gws}
    for rnd in range(int(os.environ.get("ROUNDS", "3"))):
        for g in gws:
            ws = KernelWS(g.ws_url(kids[g.name], uuid.uuid4().hex))
            mid = ws.send("shell", "kernel_info_request", {}); ws.wait_idle(mid)
            kp = kernel_pid(g.pid); g0 = ctx(g.pid); k0 = ctx(kp) if kp else (0, 0); kc0 = cpu_seconds(kp) if kp else 0
            c0 = cpu_seconds(g.pid); u0 = time.process_time(); t0 = time.perf_counter()
            mid = ws.execute(CODE); msgs = lines = 0
            while True:
                m = ws.recv()
                if m.parent_id != mid: continue
                if m.msg_type == "stream":
                    msgs += 1; lines += m.content["text"].count("\n")
                elif m.msg_type == "status" and m.content.get("execution_state") == "idle":
                    break
            el = time.perf_counter() - t0
            print(f"{g.name:14s} round {rnd}: {lines} lines in {msgs} msgs ({lines/msgs:.2f}/msg), {el:.2f} s, "
                  f"{lines/el:,.0f} lines/s, client cpu {time.process_time()-u0:.2f} s, gateway cpu {cpu_seconds(g.pid)-c0:.2f} s", flush=True)
            g1 = ctx(g.pid); k1 = ctx(kp) if kp else (0, 0)
            print(f"    gateway ctx switches vol {g1[0]-g0[0]} invol {g1[1]-g0[1]}; kernel vol {k1[0]-k0[0]} invol {k1[1]-k0[1]}, kernel cpu {cpu_seconds(kp)-kc0 if kp else 0:.2f} s", flush=True)
            ws.close()
finally:
    for g in gws: g.stop()
