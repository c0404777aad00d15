#!/usr/bin/python3
# The PyTorch side of `u2pl_bench model` (bench/model_bench.cpp): the same network
# (tools/pytorch/torch_u2pl_net.py, the U2PL DeepLabv3+ written from SPEC §1 with the public
# state-dict layout) timed in the same modes — eval forward, train forward + backward, and the
# U2PL-shaped step — with the same thread count and median of R runs; peak RSS of this process. One
# mode per process so the peak belongs to that mode. Run with Debian's /usr/bin/python3 (torch 1.13,
# CPU).
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "pytorch"))
from torch_u2pl_net import U2PLNet, draw_dropout  # noqa: E402


def build(depth, output_stride):
    dil = (12, 24, 36) if output_stride == 8 else (6, 12, 18)
    return U2PLNet(depth=depth, stem="deep", width_divisor=1, output_stride=output_stride, multi_grid=True,
                   num_classes=21, inner_planes=256, dilations=dil, rep_head=True, aux=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", choices=["eval", "train", "u2pl"], default="train")
    ap.add_argument("--depth", type=int, default=101)
    ap.add_argument("--os", type=int, default=8, dest="output_stride")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--crop", type=int, default=129)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    student = build(a.depth, a.output_stride)
    teacher = build(a.depth, a.output_stride) if a.mode == "u2pl" else None
    b = a.batch
    x1 = torch.randn(b, 3, a.crop, a.crop)
    x2 = torch.randn(2 * b, 3, a.crop, a.crop) if teacher else x1
    grads = {}

    def train_step(x):
        student.train()
        out = student(x, draw_dropout(student, x.shape[0]))
        if not grads:
            grads.update({k: torch.rand_like(v) * 2 - 1 for k, v in out.items()})
        student.zero_grad(set_to_none=False)
        torch.autograd.backward([out["pred"], out["rep"]], [grads["pred"], grads["rep"]])

    def step():
        if a.mode == "eval":
            student.eval()
            with torch.no_grad():
                student(x1)
        elif a.mode == "train":
            train_step(x1)
        else:
            teacher.eval()
            with torch.no_grad():
                teacher(x1)
            train_step(x2)
            teacher.train()
            with torch.no_grad():
                teacher(x2, draw_dropout(teacher, x2.shape[0]))

    step()  # warm-up
    times = []
    for r in range(a.repeat):
        t0 = time.perf_counter()
        step()
        times.append(1e3 * (time.perf_counter() - t0))
        print("  run %d/%d: %.1f ms" % (r + 1, a.repeat, times[-1]), file=sys.stderr)
    ms = statistics.median(times)
    images = (2 if teacher else 1) * b
    res = dict(mode=a.mode, depth=a.depth, output_stride=a.output_stride, batch=b, crop=a.crop, device="cpu",
               ms=ms, images_per_s=images * 1000.0 / ms,
               peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, threads=a.threads)
    print(json.dumps(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f)


if __name__ == "__main__":
    main()
