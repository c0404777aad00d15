#!/usr/bin/python3
# Writes tests/fixtures/model_small.safetensors (STYLE 13): the U2PL network of
# tools/pytorch/torch_u2pl_net.py (SPEC §1) at width/64 — weights, input, dropout scales, eval and
# train outputs, BN buffers after the train forward, autograd gradients of L = Σ w·outputs — for the
# network parity test. Run: /usr/bin/python3 tools/pytorch/gen_model_fixture.py [--full-r101 OUT]
import argparse
import re
import os

import torch
import torch.nn as nn

from gen_fixtures import write_safetensors
from torch_u2pl_net import DROPOUT_P, U2PLNet, draw_dropout, layer_dilations

OUT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                    "fixtures", "model_small.safetensors"))
WARMUP_PASSES = 3  # train-mode forwards without grad, so the running statistics are not 0 / 1
# The small model. Width/64: at width/32 the weights and their gradients alone take 400 KB
# (the file 596 KB); at /64 the file is 324 KB, and layer1's conv3 (1x1 from one channel into
# BN, scale-invariant but for eps) has small, ill-conditioned gradients (float32 error up to
# 2e-3 of their max, 4e-5 elsewhere). Batch 3, not 2: at batch 2 the ASPP pooled
# branch's BN sees two values per channel and outputs about ±γ + β whatever its input, so the
# gradient through it would be near zero. ASPP dilations 2, 3, 4, not 12, 24, 36: on the 5x5
# layer4 map those reach only the centre tap and leave 8 of 9 taps with zero gradient.
SMALL = dict(depth=50, stem="deep", width_divisor=64, inner_planes=8, output_stride=8,
             num_classes=5, dilations=(2, 3, 4), rep_head=True, aux=True)
SMALL_INPUT = (3, 3, 33, 33)
# The public VOC network. Batch 2: train-mode BN refuses the pooled branch at batch 1. Its
# float32 train step is chaotic: outputs within 5e-4 of float64, some gradients only 20-40%.
FULL_R101 = dict(depth=101, stem="deep", width_divisor=1, inner_planes=256, output_stride=8,
                 num_classes=21, dilations=(12, 24, 36), rep_head=True, aux=False)
FULL_INPUT = (2, 3, 65, 65)


def randomise(model, damp_residual=False):
    """Non-trivial affine parameters, so no gradient is trivially zero: BN γ ~ U(0.5, 1.5),
    β ~ U(-0.2, 0.2) (this also undoes zero_init_residual); conv biases ~ U(-0.1, 0.1).
    damp_residual: the last BN of each residual block gets γ ~ U(0.05, 0.15) instead, a mild
    form of zero_init_residual that keeps a 100-layer random network well-conditioned, so its
    float32 gradients are comparable at all."""
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.BatchNorm2d):
                last = re.fullmatch(r"encoder\.layer\d\.\d+\.bn3", name) is not None
                m.weight.uniform_(0.05, 0.15) if damp_residual and last else m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            elif isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.uniform_(-0.1, 0.1)


def fixture_dropout(model, n):
    """draw_dropout, redrawn until every site drops at least one channel and keeps one, so the
    fixture exercises both (at 4 channels x 3 images a single draw often drops none)."""
    while True:
        scales = draw_dropout(model, n)
        if all(0 < int((v == 0).sum()) < v.numel() for v in scales.values()):
            return scales


def csv(values):
    return ",".join(str(v) for v in values)


def dump(cfg, in_shape, seed, damp_residual=False):
    """Builds cfg's model, warms its BN statistics and returns (tensors, metadata)."""
    torch.manual_seed(seed)
    model = U2PLNet(**cfg)
    randomise(model, damp_residual)
    n = in_shape[0]
    model.train()
    with torch.no_grad():
        for _ in range(WARMUP_PASSES):
            model(torch.randn(in_shape), draw_dropout(model, n))
    t = {"weights." + k: v.clone() for k, v in model.state_dict().items()
         if not k.endswith("num_batches_tracked")}
    x = torch.randn(in_shape)
    scales = fixture_dropout(model, n)
    t["in.x"] = x
    t.update({"dropout." + k: v for k, v in scales.items()})

    model.eval()
    with torch.no_grad():
        feats = model.encoder(x)
        outs = model(x)
    t.update({"eval." + k: v for k, v in outs.items()})
    w = {k: torch.empty(v.shape).uniform_(-1, 1) for k, v in outs.items()}
    t.update({"loss.w_" + k: v for k, v in w.items()})

    model.train()
    xg = x.clone().requires_grad_(True)
    outs_train = model(xg, scales)
    t.update({"train." + k: v.detach() for k, v in outs_train.items()})
    t.update({"after." + k: v.clone() for k, v in model.state_dict().items()
              if k.endswith("running_mean") or k.endswith("running_var")})
    loss = sum((w[k] * v).sum() for k, v in outs_train.items())
    loss.backward()
    t.update({"grad." + k: p.grad for k, p in model.named_parameters()})
    t["grad.in.x"] = xg.grad

    meta = {k: v for k, v in cfg.items() if k != "dilations"}
    meta.update(rep_head=int(cfg["rep_head"]), aux=int(cfg["aux"]), multi_grid=1,
                dilations=csv(cfg["dilations"]), warmup_passes=WARMUP_PASSES, dropout_p=DROPOUT_P,
                bn_eps=1e-5, bn_momentum=0.1, seed=seed, torch=torch.__version__)
    meta.update({"encoder.%s.dilations" % k: csv(v)
                 for k, v in layer_dilations(model.encoder).items()})
    meta.update({"shape." + k: csv(v.shape) for k, v in list(feats.items()) + list(outs.items())})
    return t, meta


def float64_reference(cfg, t):
    """The train outputs and gradients of the same train step redone in float64 from the dumped
    inputs. The fixture stores these (rounded to float32) as the expected values: at these tiny
    widths float32 rounding in PyTorch alone moves some gradients by more than the parity
    tolerance, so the exact values are the fair reference for any float32 implementation."""
    model = U2PLNet(**cfg).double().train()
    model.load_state_dict({k[8:]: v.double() for k, v in t.items() if k.startswith("weights.")},
                          strict=False)  # num_batches_tracked is not dumped
    x = t["in.x"].double().requires_grad_(True)
    outs = model(x, {k[8:]: v.double() for k, v in t.items() if k.startswith("dropout.")})
    sum((t["loss.w_" + k].double() * v).sum() for k, v in outs.items()).backward()
    ref = {"train." + k: v.detach() for k, v in outs.items()}
    ref.update({"grad." + k: p.grad for k, p in model.named_parameters()})
    ref["grad.in.x"] = x.grad
    return ref


def float32_errors(t, ref):
    """{name: max|float32 - float64| / max|float64|}: how far PyTorch's own float32 step is."""
    return {k: ((t[k].double() - v).abs().max() / v.abs().max()).item() for k, v in ref.items()}


def report(t, meta, errors, path):
    """Stage shapes, the float32 errors, the gradients that are (near) zero, the file size."""
    for k in sorted(meta):
        if k.startswith("shape."):
            print("  %-16s %s" % (k[6:], meta[k]))
    grads = {k: v.abs().max().item() for k, v in t.items() if k.startswith("grad.")}
    tiny = sorted(k for k, g in grads.items() if g < 1e-5)
    print("  %d tensors; max|grad| < 1e-5 (expected: conv biases before train-mode BN, zero in "
          "exact arithmetic): %s" % (len(t), tiny))
    print("  float32 vs float64, max error / max value: train outputs %s" %
          {k[6:]: "%.1e" % e for k, e in errors.items() if k.startswith("train.")})
    worst = sorted((e, k) for k, e in errors.items() if k.startswith("grad.") and k not in tiny)
    print("  worst gradients: %s" % ", ".join("%s %.1e" % (k[5:], e) for e, k in worst[-5:]))
    print("  %s: %d bytes" % (path, os.path.getsize(path)))


def main():
    ap = argparse.ArgumentParser(
        description="Dump the U2PL network (tools/pytorch/torch_u2pl_net.py) from PyTorch: weights, "
                    "input, dropout scales, eval/train outputs, BN buffers after the train "
                    "forward and the gradients of L = sum(w * outputs). Without options writes "
                    "tests/fixtures/model_small.safetensors (ResNet-50 deep stem, width/64, "
                    "OS8, 5 classes, rep and aux heads, input 3x3x33x33).")
    ap.add_argument("--full-r101", metavar="OUT.safetensors",
                    help="instead write the full-width ResNet-101 (deep stem, OS8, 21 classes, "
                         "rep head, no aux, input 2x3x65x65, ~0.5 GB) to OUT")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.full_r101:
        cfg, shape, path, seed = FULL_R101, FULL_INPUT, args.full_r101, 2101
    else:
        cfg, shape, path, seed = SMALL, SMALL_INPUT, OUT, 2050
    t, meta = dump(cfg, shape, seed, damp_residual=bool(args.full_r101))
    ref = float64_reference(cfg, t)
    errors = float32_errors(t, ref)
    t.update({k: v.float() for k, v in ref.items()})
    meta["reference"] = "train outputs and gradients computed in float64"
    write_safetensors(path, t, meta)
    report(t, meta, errors, path)


if __name__ == "__main__":
    main()
