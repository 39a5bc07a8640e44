#!/usr/bin/env python3
"""Splits a `smelt simulate --trace` Chrome trace of a compiled model into its
phases (barrier to barrier) and sums their simulated time by kind: phases
with tensor-unit matmuls, phases with vector work, DMA-only phases.

Usage: python scripts/maia_phases.py TRACE.json
"""
import json, sys, collections
t = json.load(open(sys.argv[1]))["traceEvents"]
ev = [e for e in t if e.get("ph") == "X"]
# barrier events end when a phase's barrier releases
rel = sorted(set(round(e["ts"] + e["dur"], 4) for e in ev if e["name"] == "barrier"))
import bisect
ph = collections.defaultdict(lambda: collections.Counter())
for e in ev:
    if e["name"] == "barrier": continue
    k = bisect.bisect_left(rel, round(e["ts"], 4) + 1e-9)
    ph[k][e["name"]] += 1
bounds = [0.0] + rel
end = max(e["ts"] + e["dur"] for e in ev)
bounds.append(end)
tot = collections.Counter()
for k in range(len(bounds) - 1):
    d = bounds[k + 1] - bounds[k]
    kind = "matmul" if ph[k]["matmul"] else ("vector" if sum(v for n, v in ph[k].items() if n not in ("dma", "signal", "wait")) else "dma-only")
    tot[kind] += d
print({k: round(v, 1) for k, v in tot.items()}, "us total", round(end, 1))
