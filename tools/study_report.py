#!/usr/bin/env python3
"""The study's table and plot (tools/study.sh writes the runs; this reads their log.jsonl files).

Usage: study_report.py OUT --rows "ROW ..." --seeds N [--threads T --jobs J --command TEXT]
Writes OUT/study.md and OUT/study.svg. Python's standard library only.
"""
import argparse
import json
import math
import os
import platform
import re
import statistics
import sys

WHAT = {
    "suponly": "SupOnly, 16 labels",
    "suponly_all": "SupOnly, all 400 labels (the ceiling)",
    "mt": "MT (EMA teacher, L_u, no CutMix, no L_c)",
    "cutmix": "CutMix (MT + CutMix; U2PL without L_c)",
    "u2pl": "U2PL `paper`",
    "u2pl_official": "U2PL `official`",
    "no_bank": "U2PL, memory bank off",
    "no_prt": "U2PL, PRT off",
    "neg_reliable": "U2PL, negatives from reliable pixels",
    "neg_all": "U2PL, negatives from all pixels",
    "no_dpa": "U2PL, DPA off",
    "alpha40": "U2PL, α0 = 40 %",
    "alpha30": "U2PL, α0 = 30 %",
    "alpha10": "U2PL, α0 = 10 %",
    "prt_1_3": "U2PL, (r_l, r_h) = (1, 3)",
    "prt_1_6": "U2PL, (r_l, r_h) = (1, 6)",
    "warm8": "U2PL, warm start 8 epochs",
}
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
          "#e6550d"]


def schedule(config):
    """The trainer's epochs, sup_only_epoch and eval_interval as a run's config.yaml gives them."""
    keys = {"epochs": "?", "sup_only_epoch": "0", "eval_interval": "?"}
    with open(config) as f:
        for line in f:
            m = re.match(r"\s+(epochs|sup_only_epoch|eval_interval):\s*(\d+)\s*$", line)
            if m:
                keys[m.group(1)] = m.group(2)
    return keys


def read_run(path):
    """Validations [(epoch, miou)] and the semi phase's mean terms and stats of one run's log.jsonl
    (the iterations that log stats), with pl_acc also over the first and the last of its epochs."""
    vals, sums, counts, pl_by_epoch = [], {}, {}, {}

    def add(k, v):
        sums[k] = sums.get(k, 0) + v
        counts[k] = counts.get(k, 0) + 1

    with open(path) as f:
        for n, line in enumerate(f, 1):
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"study_report.py: {path}:{n}: not JSON ({e})")
            if r.get("type") == "val":
                vals.append((r["epoch"], 100 * r["miou"]))
            elif r.get("type") == "iter" and r.get("stats"):
                for k in ("sup", "unsup", "contra"):
                    if k in r:
                        add(k, r[k])
                for k, v in r["stats"].items():
                    add(k, v)
                if "pl_acc" in r["stats"]:
                    pl_by_epoch.setdefault(r["epoch"], []).append(r["stats"]["pl_acc"])
    if not vals:
        sys.exit(f"study_report.py: {path}: no validation in the log")
    stats = {k: sums[k] / counts[k] for k in sums}
    if pl_by_epoch:
        stats["pl_acc_first"] = statistics.mean(pl_by_epoch[min(pl_by_epoch)])
        stats["pl_acc_last"] = statistics.mean(pl_by_epoch[max(pl_by_epoch)])
    return vals, stats


def mean_sd(xs):
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def fmt(xs):
    m, s = mean_sd(xs)
    return f"{m:.2f} ± {s:.2f}"


def svg(rows, data, path):
    w, h, pad = 1100, 480, 50
    left_w = 640
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" '
           f'font-size="12">', f'<rect width="{w}" height="{h}" fill="white"/>']
    ys = [m for r in rows for run in data[r] for _, m in run["vals"]]
    lo, hi = math.floor(min(ys) / 5) * 5, math.ceil(max(ys) / 5) * 5
    epochs = sorted({e for r in rows for run in data[r] for e, _ in run["vals"]})
    e0, e1 = 0, max(epochs)
    x0, x1, y0, y1 = pad, left_w - 10, h - pad, pad

    def px(e):
        return x0 + (x1 - x0) * (e - e0) / max(1, e1 - e0)

    def py(v):
        return y0 - (y0 - y1) * (v - lo) / max(1e-9, hi - lo)

    out.append(f'<text x="{x0}" y="20" font-size="14">val mIoU (%) over training: mean over seeds, '
               f'band from the lowest to the highest</text>')
    for v in range(int(lo), int(hi) + 1, 5):
        out.append(f'<line x1="{x0}" x2="{x1}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#ddd"/>'
                   f'<text x="{x0 - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v}</text>')
    for e in epochs:
        out.append(f'<text x="{px(e):.1f}" y="{y0 + 16}" text-anchor="middle">{e}</text>')
    out.append(f'<text x="{(x0 + x1) / 2}" y="{h - 8}" text-anchor="middle">epoch</text>')
    for i, r in enumerate(rows):
        c = COLORS[i % len(COLORS)]
        per_epoch = {}
        for run in data[r]:
            for e, m in run["vals"]:
                per_epoch.setdefault(e, []).append(m)
        es = sorted(per_epoch)
        upper = " ".join(f"{px(e):.1f},{py(max(per_epoch[e])):.1f}" for e in es)
        lower = " ".join(f"{px(e):.1f},{py(min(per_epoch[e])):.1f}" for e in reversed(es))
        out.append(f'<polygon points="{upper} {lower}" fill="{c}" fill-opacity="0.12" stroke="none"/>')
        line = " ".join(f"{px(e):.1f},{py(statistics.mean(per_epoch[e])):.1f}" for e in es)
        out.append(f'<polyline points="{line}" fill="none" stroke="{c}" stroke-width="1.8"/>')
    # Right: the final scores, one dot per seed, a bar at the mean.
    rx0, rx1 = left_w + 150, w - 20
    finals = [m for r in rows for run in data[r] for m in [run["vals"][-1][1]]]
    flo, fhi = math.floor(min(finals) / 5) * 5, math.ceil(max(finals) / 5) * 5

    def fx(v):
        return rx0 + (rx1 - rx0) * (v - flo) / max(1e-9, fhi - flo)

    out.append(f'<text x="{rx0 - 140}" y="20" font-size="14">final val mIoU (%): each seed, mean</text>')
    step = (h - 2 * pad) / max(1, len(rows))
    for v in range(int(flo), int(fhi) + 1, 5):
        out.append(f'<line x1="{fx(v):.1f}" x2="{fx(v):.1f}" y1="{pad}" y2="{h - pad}" stroke="#ddd"/>'
                   f'<text x="{fx(v):.1f}" y="{h - pad + 16}" text-anchor="middle">{v}</text>')
    for i, r in enumerate(rows):
        c = COLORS[i % len(COLORS)]
        y = pad + step * (i + 0.5)
        out.append(f'<text x="{rx0 - 8}" y="{y + 4:.1f}" text-anchor="end" fill="{c}">{r}</text>')
        fs = [run["vals"][-1][1] for run in data[r]]
        for v in fs:
            out.append(f'<circle cx="{fx(v):.1f}" cy="{y:.1f}" r="3.5" fill="{c}" fill-opacity="0.7"/>')
        m = statistics.mean(fs)
        out.append(f'<line x1="{fx(m):.1f}" x2="{fx(m):.1f}" y1="{y - 7:.1f}" y2="{y + 7:.1f}" stroke="{c}" '
                   f'stroke-width="2.5"/>')
    out.append("</svg>")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(out) + "\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--rows", required=True)
    ap.add_argument("--seeds", type=int, required=True)
    ap.add_argument("--threads", default="?")
    ap.add_argument("--jobs", default="?")
    ap.add_argument("--command", default="tools/study.sh")
    ap.add_argument("--set", default="u2pl_synth --classes 6")
    a = ap.parse_args()
    rows = a.rows.split()
    data = {}
    for r in rows:
        data[r] = []
        for s in range(1, a.seeds + 1):
            d = os.path.join(a.out, "runs", r, f"seed{s}")
            vals, stats = read_run(os.path.join(d, "log.jsonl"))
            data[r].append({"seed": s, "vals": vals, "stats": stats})
    # U2PL's schedule (the rows' own where they change it: warm8).
    sched = schedule(os.path.join(a.out, "runs", "u2pl" if "u2pl" in rows else rows[-1], "seed1", "config.yaml"))
    lines = [f"# U2PL study: {len(rows)} rows × {a.seeds} seeds on the synthetic set", "",
             f"`{a.command.strip()}` on {platform.node()} ({os.cpu_count()} cores, {a.jobs} runs at a time with "
             f"{a.threads} thread(s) each); {a.set}, 16 labeled + 384 unlabeled images, "
             f"100 val images; configs/synth_*.yaml (ResNet-18 / 8, {sched['epochs']} epochs of which "
             f"{sched['sup_only_epoch']} warm start). Final: the last validation (epoch {sched['epochs']}); "
             f"best: the best of the validations every {sched['eval_interval']} epochs. "
             f"Mean ± standard deviation over seeds 1..{a.seeds} (trainer.seed); "
             f"final − U2PL, paired: the mean ± standard deviation of the per-seed differences from U2PL `paper` "
             f"(a seed fixes the initialisation, the data order and the draws).", "",
             "| row | what | final val mIoU | best val mIoU | final − U2PL, paired | final per seed | "
             "best per seed |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    final = {r: [run["vals"][-1][1] for run in data[r]] for r in rows}
    for r in rows:
        fin = final[r]
        best = [max(m for _, m in run["vals"]) for run in data[r]]
        # The same seed is the same initialisation, data order and draws: the per-seed difference
        # from U2PL has less spread than the rows' own.
        paired = fmt([a - b for a, b in zip(fin, final["u2pl"])]) if "u2pl" in final and r != "u2pl" else ""
        lines.append(f"| {r} | {WHAT.get(r, r)} | {fmt(fin)} | {fmt(best)} | {paired} | "
                     f"{' / '.join(f'{v:.2f}' for v in fin)} | {' / '.join(f'{v:.2f}' for v in best)} |")
    semi = [r for r in rows if data[r][0]["stats"]]
    if semi:
        keys = ["sup", "unsup", "contra", "reliable", "thresh", "contra_terms", "queue_fill", "pl_acc_first",
                "pl_acc_last", "pl_acc", "pl_acc_reliable", "pl_acc_unreliable", "pl_unreliable_true_negative"]
        present = [k for k in keys if any(k in run["stats"] for r in semi for run in data[r])]
        lines += ["", "Past the warm start, means over the iterations and seeds (the log's terms and stats; "
                  "pl_acc_first and pl_acc_last: the pseudo-labels' accuracy over the first and the last "
                  "epoch of that phase, pl_acc over all of it, and over the reliable and unreliable pixels):", "",
                  "| row | " + " | ".join(present) + " |", "| --- |" + " --- |" * len(present)]
        for r in semi:
            cells = []
            for k in present:
                xs = [run["stats"][k] for run in data[r] if k in run["stats"]]
                cells.append(f"{statistics.mean(xs):.4g}" if xs else "")
            lines.append(f"| {r} | " + " | ".join(cells) + " |")
    lines += ["", "Plot: study.svg (val mIoU over training per row; final scores per seed)."]
    tmp = os.path.join(a.out, "study.md.tmp")
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, os.path.join(a.out, "study.md"))
    svg(rows, data, os.path.join(a.out, "study.svg"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
