#!/usr/bin/env python3
"""Condenses `swift package benchmark --format markdown` output into one table: per benchmark, wall time per
message (p0 = least disturbed, p50, p99), throughput p50 and mallocs per message."""
import re
import sys

rows, name, cur = [], None, {}


def to_ns(value: str, unit: str) -> float:
    return float(value) * {"ns": 1, "μs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}[unit]


for line in open(sys.argv[1], errors="replace"):
    line = line.rstrip()
    if line.startswith("### "):
        if name:
            rows.append((name, cur))
        name, cur = line[4:].strip(), {}
        continue
    m = re.match(r"\|\s*([^|]+?)\s*\|(.*)", line)
    if not (name and m):
        continue
    metric, cells = m.group(1), [c.strip() for c in m.group(2).split("|") if c.strip()]
    if metric.startswith("Time (wall clock)"):
        unit = re.search(r"\((ns|μs|us|ms|s)\)", metric).group(1)
        cur["p0"], cur["p50"], cur["p99"] = (to_ns(cells[i], unit) for i in (0, 2, 5))
    elif metric.startswith("Malloc (total)"):
        cur["malloc"] = cells[2]
    elif metric.startswith("Throughput"):
        scale = {"(K)": 1e3, "(M)": 1e6}.get(metric.split()[-1], 1)
        cur["tput"] = float(cells[2]) * scale
if name:
    rows.append((name, cur))


def fmt_ns(ns: float) -> str:
    return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns"


print("| benchmark (per message) | wall p0 | wall p50 | wall p99 | messages/s (p50) | mallocs |")
print("|---|---|---|---|---|---|")
for n, c in sorted(rows):
    if "p50" in c:
        print(f"| {n} | {fmt_ns(c['p0'])} | {fmt_ns(c['p50'])} | {fmt_ns(c['p99'])} | {c.get('tput', 0):,.0f} | "
              f"{c.get('malloc', '–')} |")
