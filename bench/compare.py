#!/usr/bin/env python3
# Compares two layer-benchmark JSON files (u2pl_bench layers --json, bench/layers_torch.py --json):
# per row the engine and PyTorch medians and the ratio engine/torch, forward and backward, then the
# count-weighted totals per kind, for convs and for everything. Plain python3, no torch.
import argparse
import json
import sys

TIMING = ("name", "count", "fwd_ms", "bwd_ms", "gflops_fwd")


def shape_key(row):
    return tuple(sorted((k, v) for k, v in row.items() if k not in TIMING))


def ratio(a, b):
    return f"{a / b:8.2f}" if b > 0 else f"{'-':>8}"


def main():
    ap = argparse.ArgumentParser(description="engine/torch ratios of two layer-benchmark JSON files")
    ap.add_argument("engine_json")
    ap.add_argument("torch_json")
    a = ap.parse_args()
    with open(a.engine_json) as f:
        eng = json.load(f)
    with open(a.torch_json) as f:
        tor = {r["name"]: r for r in json.load(f)}

    pairs = []
    for e in eng:
        t = tor.pop(e["name"], None)
        if t is None:
            sys.stderr.write(f"compare: {e['name']} is only in {a.engine_json}\n")
        elif shape_key(e) != shape_key(t) or e["count"] != t["count"]:
            sys.stderr.write(f"compare: {e['name']} has different shapes or counts; skipped\n")
        else:
            pairs.append((e, t))
    for name in tor:
        sys.stderr.write(f"compare: {name} is only in {a.torch_json}\n")
    if not pairs:
        sys.exit("compare: no rows in common")

    wn = max(len(e["name"]) for e, _ in pairs)
    print(f"{'name':<{wn}}  {'kind':<8}{'count':>6}{'eng fwd':>10}{'torch fwd':>10}{'ratio':>8}"
          f"{'eng bwd':>10}{'torch bwd':>10}{'ratio':>8}")
    totals = {}  # group -> [engine fwd, torch fwd, engine bwd, torch bwd], count-weighted ms
    for e, t in pairs:
        print(f"{e['name']:<{wn}}  {e['kind']:<8}{e['count']:>6}{e['fwd_ms']:10.3f}{t['fwd_ms']:10.3f}"
              f"{ratio(e['fwd_ms'], t['fwd_ms'])}{e['bwd_ms']:10.3f}{t['bwd_ms']:10.3f}"
              f"{ratio(e['bwd_ms'], t['bwd_ms'])}")
        c = e["count"]
        for group in (e["kind"], "all"):
            acc = totals.setdefault(group, [0.0, 0.0, 0.0, 0.0])
            for i, v in enumerate((e["fwd_ms"], t["fwd_ms"], e["bwd_ms"], t["bwd_ms"])):
                acc[i] += c * v

    print("\ncount-weighted totals (ms), ratio = engine/torch")
    print(f"{'kind':<10}{'eng fwd':>10}{'torch fwd':>10}{'ratio':>8}{'eng bwd':>10}{'torch bwd':>10}"
          f"{'ratio':>8}{'eng f+b':>10}{'torch f+b':>10}{'ratio':>8}")
    for group in [k for k in ("conv", "bn", "bilinear", "maxpool") if k in totals] + ["all"]:
        ef, tf, eb, tb = totals[group]
        print(f"{group:<10}{ef:10.1f}{tf:10.1f}{ratio(ef, tf)}{eb:10.1f}{tb:10.1f}{ratio(eb, tb)}"
              f"{ef + eb:10.1f}{tf + tb:10.1f}{ratio(ef + eb, tf + tb)}")


if __name__ == "__main__":
    main()
