#!/usr/bin/python3
# The PyTorch side of `u2pl_bench layers` (bench/layer_bench.cpp): the same rows (every distinct
# conv, BN, bilinear and max-pool shape of ResNet-101 DeepLabv3+ at output stride 8), timed forward
# and backward (dx computed) with nn.Conv2d, nn.BatchNorm2d in train mode, F.interpolate(bilinear,
# align_corners=True) and F.max_pool2d(ceil_mode=True). Run with Debian's /usr/bin/python3 (torch
# 1.13, CPU). Writes the same JSON rows as the engine with --json; bench/compare.py compares them.
import argparse
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

NUM_CLASSES = 21  # PASCAL VOC


class OpList:
    """Ops in network order; a repeated shape bumps the count of its first row (as the engine)."""

    def __init__(self):
        self.ops = []

    def _add(self, op):
        key = {k: v for k, v in op.items() if k not in ("name", "count")}
        for o in self.ops:
            if {k: v for k, v in o.items() if k not in ("name", "count")} == key:
                o["count"] += 1
                return op
        self.ops.append(op)
        return op

    def conv(self, name, x, cout, k, stride, dilation, bias):
        n, c, h, w = x
        pad = dilation if k == 3 else 0
        oh = (h + 2 * pad - dilation * (k - 1) - 1) // stride + 1
        ow = (w + 2 * pad - dilation * (k - 1) - 1) // stride + 1
        self._add(dict(name=name, kind="conv", n=n, c=c, h=h, w=w, oh=oh, ow=ow, cout=cout, k=k,
                       stride=stride, pad=pad, dilation=dilation, bias=bias, count=1))
        return (n, cout, oh, ow)

    def bn(self, name, x):
        n, c, h, w = x
        self._add(dict(name=name, kind="bn", n=n, c=c, h=h, w=w, count=1))
        return x

    def bilinear(self, name, x, oh, ow):
        n, c, h, w = x
        self._add(dict(name=name, kind="bilinear", n=n, c=c, h=h, w=w, oh=oh, ow=ow, count=1))
        return (n, c, oh, ow)

    def maxpool(self, name, x):
        n, c, h, w = x
        k, stride, pad = 3, 2, 1
        out = [-(-(s + 2 * pad - k) // stride) + 1 for s in (h, w)]  # ceil_mode
        out = [o - 1 if (o - 1) * stride >= s + pad else o for o, s in zip(out, (h, w))]
        self._add(dict(name=name, kind="maxpool", n=n, c=c, h=h, w=w, oh=out[0], ow=out[1], k=k,
                       stride=stride, pad=pad, ceil_mode=True, count=1))
        return (n, c, out[0], out[1])


def bottleneck_layer(L, index, x, planes, stride, dilations):
    for b, d in enumerate(dilations):
        p = f"encoder.layer{index}.{b}."
        s = stride if b == 0 else 1
        t = L.bn(p + "bn1", L.conv(p + "conv1", x, planes, 1, 1, 1, False))
        t = L.bn(p + "bn2", L.conv(p + "conv2", t, planes, 3, s, d, False))
        t = L.bn(p + "bn3", L.conv(p + "conv3", t, planes * 4, 1, 1, 1, False))
        if b == 0 and (s != 1 or x[1] != planes * 4):
            L.bn(p + "downsample.1", L.conv(p + "downsample.0", x, planes * 4, 1, s, 1, False))
        x = t
    return x


def seg_head(L, name, x, cout):
    t = L.bn(name + ".1", L.conv(name + ".0", x, 256, 3, 1, 1, True))
    t = L.bn(name + ".5", L.conv(name + ".4", t, 256, 3, 1, 1, True))
    L.conv(name + ".8", t, cout, 1, 1, 1, True)


def network_layer_ops(crop, batch):
    L = OpList()
    x = (batch, 3, crop, crop)
    x = L.bn("encoder.conv1.1", L.conv("encoder.conv1.0", x, 64, 3, 2, 1, False))
    x = L.bn("encoder.conv1.4", L.conv("encoder.conv1.3", x, 64, 3, 1, 1, False))
    x = L.bn("encoder.bn1", L.conv("encoder.conv1.6", x, 128, 3, 1, 1, False))
    x = L.maxpool("encoder.maxpool", x)
    f1 = bottleneck_layer(L, 1, x, 64, 1, [1, 1, 1])
    x = bottleneck_layer(L, 2, f1, 128, 2, [1, 1, 1, 1])
    x = bottleneck_layer(L, 3, x, 256, 1, [1] + [2] * 22)
    f4 = bottleneck_layer(L, 4, x, 512, 1, [4, 8, 16])
    p = L.bn("decoder.aspp.conv1.2",
             L.conv("decoder.aspp.conv1.1", (batch, f4[1], 1, 1), 256, 1, 1, 1, False))
    L.bilinear("decoder.aspp.conv1.up", p, f4[2], f4[3])
    L.bn("decoder.aspp.conv2.1", L.conv("decoder.aspp.conv2.0", f4, 256, 1, 1, 1, False))
    for i, d in enumerate((12, 24, 36)):
        n = f"decoder.aspp.conv{i + 3}"
        L.bn(n + ".1", L.conv(n + ".0", f4, 256, 3, 1, d, False))
    head = L.bn("decoder.head.1",
                L.conv("decoder.head.0", (batch, 5 * 256, f4[2], f4[3]), 256, 3, 1, 1, False))
    L.bilinear("decoder.head.up", head, f1[2], f1[3])
    L.bn("decoder.low_conv.1", L.conv("decoder.low_conv.0", f1, 256, 1, 1, 1, True))
    dec = (batch, 512, f1[2], f1[3])
    seg_head(L, "decoder.classifier", dec, NUM_CLASSES)
    seg_head(L, "decoder.representation", dec, 256)
    L.bilinear("pred.up", (batch, NUM_CLASSES, f1[2], f1[3]), crop, crop)
    return L.ops


def conv_gflop(op):
    if op["kind"] != "conv":
        return 0.0
    return 2.0 * op["n"] * op["cout"] * op["oh"] * op["ow"] * op["c"] * op["k"] ** 2 / 1e9


def shape_text(op):
    s = f"{op['n']}x{op['c']}x{op['h']}x{op['w']}"
    if op["kind"] == "conv":
        s += f" k{op['k']} s{op['stride']} p{op['pad']} d{op['dilation']}" + (" +b" if op["bias"] else "")
    if op["kind"] == "maxpool":
        s += f" k{op['k']} s{op['stride']} p{op['pad']} ceil"
    if op["kind"] == "conv":
        s += f" -> {op['cout']}x{op['oh']}x{op['ow']}"
    elif op["kind"] != "bn":
        s += f" -> {op['c']}x{op['oh']}x{op['ow']}"
    return s


def median_ms(fn, repeat):
    fn()  # warm-up
    ms = []
    for _ in range(repeat):
        ms.append(fn())
    ms.sort()
    m = len(ms) // 2
    return ms[m] if len(ms) % 2 else 0.5 * (ms[m - 1] + ms[m])


def build_module(op):
    """The op as a function of x, and the module whose parameter gradients are cleared."""
    if op["kind"] == "conv":
        m = nn.Conv2d(op["c"], op["cout"], op["k"], stride=op["stride"], padding=op["pad"],
                      dilation=op["dilation"], bias=op["bias"])
        return m, m
    if op["kind"] == "bn":
        m = nn.BatchNorm2d(op["c"]).train()
        return m, m
    if op["kind"] == "bilinear":
        size = (op["oh"], op["ow"])
        return (lambda x: F.interpolate(x, size=size, mode="bilinear", align_corners=True)), None
    k, s, p = op["k"], op["stride"], op["pad"]
    return (lambda x: F.max_pool2d(x, k, s, p, ceil_mode=True)), None


def time_op(op, repeat):
    fn, module = build_module(op)
    gen = torch.Generator().manual_seed(2024)
    x = (torch.rand((op["n"], op["c"], op["h"], op["w"]), generator=gen) * 2 - 1).requires_grad_()
    with torch.no_grad():
        dy = torch.rand(fn(x).shape, generator=gen) * 2 - 1

    def forward():
        t0 = time.perf_counter()
        fn(x)
        return (time.perf_counter() - t0) * 1e3

    def backward():
        # Fresh gradients each run, so autograd writes dx and dw instead of adding to old ones
        # (the engine's dx uses beta 0).
        x.grad = None
        if module is not None:
            module.zero_grad(set_to_none=True)
        y = fn(x)
        t0 = time.perf_counter()
        y.backward(dy)
        return (time.perf_counter() - t0) * 1e3

    return median_ms(forward, repeat), median_ms(backward, repeat)


def print_table(rows, out):
    wn = max([4] + [len(r["name"]) for r in rows])
    ws = max([5] + [len(shape_text(r)) for r in rows])
    out.write(f"{'name':<{wn}}  {'kind':<8}  {'shape':<{ws}}{'count':>6}{'fwd ms':>11}{'bwd ms':>11}"
              f"{'fwd GF/s':>9}{'bwd GF/s':>9}{'count*(f+b)':>13}\n")
    tot = {"conv": [0.0, 0.0], "all": [0.0, 0.0]}
    for r in rows:
        gf = conv_gflop(r)
        rate = (f"{gf / (r['fwd_ms'] * 1e-3):9.1f}{2 * gf / (r['bwd_ms'] * 1e-3):9.1f}" if gf > 0
                else f"{'-':>9}{'-':>9}")
        out.write(f"{r['name']:<{wn}}  {r['kind']:<8}  {shape_text(r):<{ws}}{r['count']:>6}"
                  f"{r['fwd_ms']:11.3f}{r['bwd_ms']:11.3f}{rate}"
                  f"{r['count'] * (r['fwd_ms'] + r['bwd_ms']):13.2f}\n")
        for key in ("conv", "all") if r["kind"] == "conv" else ("all",):
            tot[key][0] += r["count"] * r["fwd_ms"]
            tot[key][1] += r["count"] * r["bwd_ms"]
    for key, label in (("conv", "total conv"), ("all", "total all ")):
        f, b = tot[key]
        out.write(f"{label} (count-weighted): fwd {f:.1f} ms, bwd {b:.1f} ms, fwd+bwd {f + b:.1f} ms\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("mode", choices=["layers"])
    ap.add_argument("--crop", type=int, default=129)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--filter", default="")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    if a.batch < 2 or a.repeat < 3 or a.threads < 1 or a.crop < 1:
        ap.error("need --batch >= 2, --repeat >= 3, --threads >= 1 and a positive --crop")
    torch.set_num_threads(a.threads)
    ops = [op for op in network_layer_ops(a.crop, a.batch)
           if not a.filter or a.filter in op["name"] or a.filter == op["kind"]]
    if not ops:
        ap.error(f"--filter '{a.filter}' matches no row")
    sys.stderr.write(f"layers_torch: torch {torch.__version__}, mkldnn "
                     f"{torch.backends.mkldnn.is_available()}, crop {a.crop}, batch {a.batch}, "
                     f"threads {torch.get_num_threads()}, repeat {a.repeat}, {len(ops)} rows\n")
    rows = []
    for i, op in enumerate(ops):
        fwd, bwd = time_op(op, a.repeat)
        gf = conv_gflop(op)
        rows.append(dict(op, fwd_ms=fwd, bwd_ms=bwd,
                         gflops_fwd=gf / (fwd * 1e-3) if op["kind"] == "conv" else None))
        sys.stderr.write(f"[{i + 1}/{len(ops)}] {op['name']} {shape_text(op)}: fwd {fwd:.3f} ms, "
                         f"bwd {bwd:.3f} ms\n")
    print_table(rows, sys.stdout)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
