#!/usr/bin/python3
# The PyTorch side of `u2pl_bench step` (bench/step_bench.cpp): whole U2PL training iterations
# past the warm start, float32 on the CPU or (--device cuda) a GPU, in the order of the public
# train_semi.py (cudnn.benchmark on, as there), made of
# tools/pytorch/torch_u2pl_train.py's losses, CutMix and memory bank (the float64 reference of this
# iteration that tests/test_train_e2e.cpp replays; its functions take the dtype of their inputs)
# on the network of bench/model_torch.py (tools/pytorch/torch_u2pl_net.py). The VOC recipe and
# preset of the engine's config; same thread count, median of R runs, peak RSS of this process (and
# on CUDA the peak of torch's allocator), one preset per process. Run with Debian's
# /usr/bin/python3 (torch 1.13, CPU), or a Python with a CUDA build of torch for --device cuda.
import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "pytorch"))
import torch_u2pl_train as tu  # noqa: E402
from torch_u2pl_net import U2PLNet, draw_dropout  # noqa: E402

# bench/step_bench.cpp's recipe (the public pascal_1464_ours.yaml): SGD with the decoder at 10x,
# poly lr, 80 epochs of which 1 warm start, α0 = 20 % for both entropy filters, EMA cap 0.99,
# queues of 30000 rows (background 50000).
RECIPE = dict(lr=0.001, momentum=0.9, weight_decay=1e-4, lr_power=0.9, head_lr_mult=10, epochs=80,
              sup_only_epoch=1, drop_percent=80.0, low_entropy_threshold=20.0, ema_decay=0.99,
              queue_size=30000, queue_size_background=50000)
CONTRA = dict(low_rank=3, high_rank=20, delta_p=0.3, delta_n=1.0, temperature=0.5)
# The keys each preset sets (README, "Preset-dependent public keys").
PRESETS = {"paper": dict(num_queries=50, num_negatives=256, contra_weight=0.1),
           "official": dict(num_queries=256, num_negatives=50, contra_weight=1.0)}


def build(a):
    """bench/model_torch.py's network, with --classes and --width-divisor."""
    dil = (12, 24, 36) if a.output_stride == 8 else (6, 12, 18)
    return U2PLNet(depth=a.depth, stem="deep", width_divisor=a.width_divisor, output_stride=a.output_stride,
                   multi_grid=True, num_classes=a.classes, inner_planes=256, dilations=dil, rep_head=True,
                   aux=False)


def make_step(a):
    """The iteration as a closure over its state (networks, optimiser, bank, batches, draws);
    each call runs the next iteration of epoch sup_only_epoch + 1 and returns its loss terms."""
    r, pr, official = RECIPE, PRESETS[a.preset], a.preset == "official"
    B, H, W, C = a.batch, a.crop, a.crop, a.classes
    dev = torch.device(a.device)
    tu.CROP = (H, W)  # its CutMix helpers (cutmix_boxes, mix_mask) read the crop from the module
    student, teacher = build(a).to(dev), build(a).to(dev)
    with torch.no_grad():  # confident classes, or no pixel is an anchor (bench/step_bench.cpp)
        for net in (student, teacher):
            net.decoder.classifier[8].weight.mul_(tu.LOGIT_GAIN)
    for p in teacher.parameters():
        p.requires_grad_(False)
    opt = torch.optim.SGD([{"params": list(student.encoder.parameters()), "lr": r["lr"]},
                           {"params": list(student.decoder.parameters()), "lr": r["lr"] * r["head_lr_mult"]}],
                          lr=r["lr"], momentum=r["momentum"], weight_decay=r["weight_decay"])
    base_lrs = [g["lr"] for g in opt.param_groups]
    bank = tu.MemoryBank([r["queue_size_background"]] + [r["queue_size"]] * (C - 1), 256 // a.width_divisor,
                         torch.float32, dev)
    cfg = dict(CONTRA, low_rank=min(CONTRA["low_rank"], C - 1), num_queries=pr["num_queries"],
               num_negatives=pr["num_negatives"])  # low_rank clamped as the engine's reader does
    # The loader's output: normalised images in [-1, 1), labels in [0, C) with ~5 % ignored.
    img_l, img_u = torch.rand(B, 3, H, W) * 2 - 1, torch.rand(B, 3, H, W) * 2 - 1
    lab_l = torch.randint(0, C, (B, H, W))
    lab_l[torch.rand(B, H, W) < 0.05] = tu.IGNORE
    img_l, img_u, lab_l = img_l.to(dev), img_u.to(dev), lab_l.to(dev)
    ipe, epochs, sup_only = max(1000, a.repeat + 1), r["epochs"], r["sup_only_epoch"]  # as the engine
    epoch = sup_only + 1
    rs, gen = np.random.RandomState(0), torch.Generator().manual_seed(0)
    state = dict(it=epoch * ipe)

    def draw(n, high):
        return torch.randint(high, (n,), generator=gen).to(dev)

    def step():
        it = state["it"]
        state["it"] += 1
        factor = (1 - it / (epochs * ipe)) ** r["lr_power"]
        for g, b in zip(opt.param_groups, base_lrs):
            g["lr"] = b * factor
        teacher.eval()  # pseudo-labels: argmax of the teacher's upsampled eval-mode logits
        with torch.no_grad():
            label_u = tu.up(teacher(img_u)["pred"], (H, W)).argmax(1)
        x_u = img_u
        if rs.uniform() < 0.5:  # the public code's CutMix coin
            m = tu.mix_mask(tu.cutmix_boxes(rs, B)).to(dev)
            nxt = [(i + 1) % B for i in range(B)]
            x_u = img_u * m[:, None] + img_u[nxt] * (1 - m[:, None])
            label_u = label_u * m + label_u[nxt] * (1 - m)
        image_all = torch.cat([img_l, x_u])
        student.train()
        out = student(image_all, draw_dropout(student, 2 * B, dev))
        pred_up = tu.up(out["pred"], (H, W))
        sup = F.cross_entropy(pred_up[:B], lab_l, ignore_index=tu.IGNORE)
        teacher.train()
        with torch.no_grad():
            out_t = teacher(image_all, draw_dropout(teacher, 2 * B, dev))
            prob_t = torch.softmax(out_t["pred"], 1)
            logits_t_up = tu.up(out_t["pred"][B:], (H, W))
        alpha_u = (100 - r["drop_percent"]) * (1 - epoch / epochs)
        unsup, _, ent, _, _ = tu.unsup_loss(pred_up[B:], label_u, logits_t_up, 100 - alpha_u, official)
        size = tuple(out["pred"].shape[2:])
        with torch.no_grad():
            alpha_c = r["low_entropy_threshold"] * (1 - epoch / epochs)
            low_u, high_u, _, _ = tu.contrastive_masks(ent, label_u, alpha_c, official)
            lab_l_s = tu.down_nearest(lab_l, size).long()
            lab_u_s = tu.down_nearest(label_u, size).long()
            valid_l = lab_l_s != tu.IGNORE
            low_all = torch.cat([valid_l, tu.down_nearest(low_u, size).bool()])
            high_all = torch.cat([valid_l, tu.down_nearest(high_u, size).bool()])
        contra, terms = tu.contrastive_loss(out["rep"], out_t["rep"], prob_t[:B], prob_t[B:], lab_l_s, lab_u_s,
                                            low_all, high_all, bank, cfg, official, draw)
        loss = sup + unsup + pr["contra_weight"] * contra
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema = min(1 - 1 / (it - ipe * sup_only + 1), r["ema_decay"])
        with torch.no_grad():
            for tp, sp in zip(teacher.parameters(), student.parameters()):
                tp.data = ema * tp.data + (1 - ema) * sp.data
        return dict(sup=float(sup), unsup=float(unsup), contra=float(contra), total=float(loss), contra_terms=terms,
                    ema=ema)

    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    ap.add_argument("--depth", type=int, default=101)
    ap.add_argument("--os", type=int, choices=[8, 16], default=8, dest="output_stride")
    ap.add_argument("--width-divisor", type=int, default=1)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--crop", type=int, default=129)
    ap.add_argument("--classes", type=int, default=21)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cuda = a.device == "cuda"
    if cuda:
        if not torch.cuda.is_available():
            sys.exit("step_torch.py: --device cuda, but this torch sees no CUDA device")
        torch.backends.cudnn.benchmark = True
    step = make_step(a)
    step()  # warm-up
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(a.repeat):
        t0 = time.perf_counter()
        last = step()  # its float() reads synchronise
        if cuda:
            torch.cuda.synchronize()
        times.append(1e3 * (time.perf_counter() - t0))
        print("  run %d/%d: %.1f ms (loss %.4f, %d contrastive terms)" % (
            i + 1, a.repeat, times[-1], last["total"], last["contra_terms"]), file=sys.stderr)
    ms = statistics.median(times)
    res = dict(preset=a.preset, depth=a.depth, output_stride=a.output_stride, width_divisor=a.width_divisor,
               batch=a.batch, crop=a.crop, classes=a.classes, device=a.device, ms=ms, iterations_per_s=1000.0 / ms,
               peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, threads=a.threads,
               last=last)
    if cuda:
        res["peak_device_bytes"] = torch.cuda.max_memory_allocated()
    print(json.dumps(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f)


if __name__ == "__main__":
    main()
