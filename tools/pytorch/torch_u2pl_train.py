#!/usr/bin/python3
# U2PL training iterations in PyTorch (STYLE 15), written from SPEC §2, §3 and §7 in the order of
# the public train_semi.py, on the network of tools/pytorch/torch_u2pl_net.py: poly lr over two SGD
# groups, warm start, handover, EMA teacher, pseudo-labels, CutMix, the supervised, unsupervised
# and contrastive losses (`paper` | `official`) with the category-wise memory bank. Writes the
# dump tests/test_train_e2e.cpp replays through u2pl::TrainStep. Regenerate with
#   /usr/bin/python3 tools/pytorch/torch_u2pl_train.py --preset paper --out tests/fixtures/train_e2e_paper.safetensors
#   /usr/bin/python3 tools/pytorch/torch_u2pl_train.py --preset official --out tests/fixtures/train_e2e_official.safetensors
# and check the losses against the reference vectors first (every case must print ok):
#   /usr/bin/python3 tools/pytorch/torch_u2pl_train.py --check-reference ../shared/reference/u2pl
#
# Randomness is an input: the Dropout2d scales of every train-mode forward, the CutMix boxes
# (numpy semantics, SPEC §3) and the contrastive loss's torch.randint draws are drawn here and
# stored, so the engine replays them. The expected values come from a float64 run. The script
# replays the same inputs in float32 too and prints how far PyTorch's own float32 run lands from
# float64 (also stored as f32_dev.* metadata): about 3e-7 relative on the loss terms, 1e-6 on the
# thresholds, 1e-6 of each tensor's largest value on the final parameters, BN buffers and queue
# rows, and up to ~2e-6 absolute on the momentum (a sum of gradients, some of which, e.g. the
# conv biases right before a train-mode BN, are zero in exact arithmetic). That is the float32
# noise any float32 implementation has; tests/test_train_e2e.cpp's tolerances sit ~10x above it
# (loss terms rel 1e-5, thresholds abs 1e-5, states 1e-5 normwise, momentum abs 2e-5 + 1e-4
# normwise). Discrete decisions (argmax pseudo-labels, the entropy percentiles, δp, the
# probability ranks) must not lie within float32 noise of their thresholds, or the engine could
# take the other branch and replay the recorded draws against different candidate lists: the
# script measures every such margin (only where the decision is used) against the float32
# deviation of what it reads, and moves to the next seed until all are MIN_SAFETY times apart.
#
# Conditioning (what made float32 noise grow 10-20x an iteration before): VOC's learning rates
# (0.001, decoder 0.01), not 10x; the rep head's last bias away from 0 (see quantised_init);
# images with different global means (see smooth_images).
import argparse
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_fixtures import write_safetensors  # noqa: E402
from torch_u2pl_net import DROPOUT_P, U2PLNet  # noqa: E402

IGNORE = 255
MEAN = (123.675, 116.28, 103.53)  # SPEC §4, RGB on 0-255 values
STD = (58.395, 57.12, 57.375)
MIN_SAFETY = 10  # every decision's margin / the float32 noise of what it reads, at least
# PyTorch's own float32 replay must stay this close to float64 on the loss terms (relative) and
# the final states (normwise), a third of tests/test_train_e2e.cpp's 1e-5: a seed whose float32
# run is that ill-conditioned would leave any float32 implementation too little room.
MAX_F32_DEV = 3.3e-6
F32_DEV_CHECKED = ("sup", "unsup", "contra", "student params", "student buffers", "teacher params",
                   "teacher buffers", "bank")

# The tiny network: ResNet-18 deep stem at width/64 (layers 1, 2, 4, 8 channels), OS16, ASPP
# inner 4 with dilations 1, 2, 3 (layer4 is 3x2 here: larger dilations would reach only the
# centre tap), decoder and rep width 256/64 = 4, 4 classes. Crop 31x23: non-square, so a height /
# width swap anywhere shows; pred and rep are 9x7. The crop and α0 = 16 % (drop_percent 84,
# low_entropy_threshold 16, where VOC has 20) are chosen together: every entropy percentile of the
# run (q = 88, 92, 96 and, official, 12, 8, 4 over n = 2·31·23 = 1426 pixels) then has an integer
# rank q/100·(n − 1) exactly in float64, so each threshold is one of the entropies and the masks
# depend only on the entropies' order, not on where γ falls between two of them (with 1426
# pixels that gap is ~1e-5, float32 noise in the teacher's train-mode entropies ~1e-5).
NET = dict(depth=18, stem="deep", width_divisor=64, output_stride=16, multi_grid=False,
           inner_planes=4, dilations=(1, 2, 3), num_classes=4, rep_head=True, aux=False)
CROP = (31, 23)
BATCH = 2  # labeled and unlabeled images per iteration and replica
# The labeled set (repeated every iteration, as a 2-image split is) and the unlabeled pool.
POOL_L, POOL_U = 2, 4
# 4 iterations, 1 an epoch: iteration 0 is the warm start, 1 the handover, 2-3 EMA (0.5, 2/3).
SCHEDULE = dict(epochs=4, iters_per_epoch=1, sup_only_epoch=1)
# Per replica count (--replicas: the public code's GPU count), per iteration: the pool indices of
# the global labeled and unlabeled batches (replica r takes entries [r·BATCH, (r+1)·BATCH)) and
# each replica's CutMix coin (the public code's, fixed here).
REPLICA_SCHEDULES = {
    1: dict(labeled=[[0, 1], [1, 0], [0, 1], [1, 0]], unlabeled=[None, [0, 1], [2, 3], [1, 2]],
            mix=[None, [True], [False], [True]]),
    2: dict(labeled=[[0, 1, 1, 0], [1, 0, 0, 1], [0, 1, 0, 1], [1, 0, 1, 0]],
            unlabeled=[None, [0, 1, 2, 3], [2, 3, 1, 0], [1, 2, 3, 0]],
            mix=[None, [True, False], [False, True], [True, True]]),
}
# Optimiser: SGD momentum 0.9, weight decay on every parameter (1e-3 rather than VOC's 1e-4, so
# that its share of the update stands above the float32 noise), backbone lr 0.001, decoder 10x
# (VOC's rates; 10x larger makes this random network's steps chaotic enough that float32 noise
# grows 10x an iteration).
OPTIM = dict(lr=0.001, momentum=0.9, weight_decay=1e-3, lr_power=0.9, head_lr_mult=10)
UNSUP = dict(drop_percent=84.0, loss_weight=1.0)
# Contrastive: small M and N; ranks 1 and 3 so both rank bounds decide for 4 classes.
CONTRA = dict(low_rank=1, high_rank=3, delta_p=0.3, delta_n=1.0, low_entropy_threshold=16.0,
              num_queries=4, num_negatives=8, temperature=0.5)
# SPEC §7 rows that differ, the λc each preset gives, and queue sizes (classes 1.., class 0) small
# enough that some queue wraps within the four iterations: `paper` pushes ~100 rows a step,
# `official` only a few (its negatives need label == c, a high entropy and a rank 1-2).
PRESETS = {
    "paper": dict(official=False, contra_weight=0.1, teacher_copy_bn=True, queue_size=24,
                  queue_size_background=32),
    "official": dict(official=True, contra_weight=1.0, teacher_copy_bn=False, queue_size=3,
                     queue_size_background=5),
}
EMA_CAP = 0.99
LOGIT_GAIN = 6
OUT_FIELDS = ["sup", "unsup", "contra", "thresh", "reliable", "contra_low", "contra_high",
              "terms", "ema", "lr"]


# --------------------------------------------------------------------------- safetensors I/O

ST_DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64,
             "U8": np.uint8}


def read_safetensors(path):
    """{name: torch tensor}, metadata."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=ST_DTYPES[e["dtype"]]).reshape(e["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out, meta


# --------------------------------------------------------------------------- losses (SPEC §2)

def up(x, size):
    """Bilinear, align_corners=True (SPEC: "bilinear")."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def down_nearest(x, size):
    """(N, H, W) labels or masks → (N, h, w), PyTorch's nearest rule."""
    return F.interpolate(x[:, None].double(), size=size, mode="nearest")[:, 0]


def entropy_of(logits):
    """(N, C, H, W) → (N, H, W): −Σ p log(p + 1e-10), p = softmax over C."""
    p = torch.softmax(logits, dim=1)
    return -(p * torch.log(p + 1e-10)).sum(1)


def percentile(values, q):
    """numpy.percentile, method 'linear', on the float64 copy of the values (as the engine)."""
    return float(np.percentile(values.detach().double().cpu().numpy().ravel(), q))


def unsup_loss(predict, target, teacher_logits, percent, scale_by_valid):
    """SPEC §2.2. predict (B,C,H,W) student logits at crop size, target (B,H,W) pseudo-labels,
    teacher_logits (B,C,H,W). Pixels whose teacher entropy is ≥ the `percent` percentile (over
    the labelled ones) become 255. official: (B·H·W / N_valid) × mean CE; paper: mean CE.
    Returns loss, threshold, entropy, filtered target, weight."""
    with torch.no_grad():
        ent = entropy_of(teacher_logits)
        valid = target != IGNORE
        thresh = percentile(ent[valid], percent)
        filtered = target.clone()
        filtered[ent.ge(thresh) & valid] = IGNORE
        n_valid = int((filtered != IGNORE).sum())
    if n_valid == 0:
        return 0 * predict.sum(), thresh, ent, filtered, 0.0
    weight = target.numel() / n_valid
    ce = F.cross_entropy(predict, filtered.long(), ignore_index=IGNORE)
    return (weight * ce if scale_by_valid else ce), thresh, ent, filtered, weight


def contrastive_masks(entropy_u, label_u, alpha_t, official):
    """SPEC §2.3 crop-size masks of the unlabeled images, (n_u, H, W) bool each, and their
    thresholds. official: low = H ≤ percentile(α_t), high = H ≥ percentile(100 − α_t); paper:
    reliable H < γ_t, unreliable H ≥ γ_t, γ_t = percentile(100 − α_t); all only where the
    pseudo-label is not 255."""
    valid = label_u != IGNORE
    high_t = percentile(entropy_u[valid], 100 - alpha_t)
    if official:
        low_t = percentile(entropy_u[valid], alpha_t)
        low = entropy_u.le(low_t) & valid
    else:
        low_t = high_t
        low = entropy_u.lt(low_t) & valid
    high = entropy_u.ge(high_t) & valid
    return low, high, low_t, high_t


class MemoryBank:
    """One FIFO queue per class: append, keep the newest `capacity` rows (the public
    dequeue_and_enqueue: torch.cat, then the last queue_size rows)."""

    def __init__(self, capacities, dim, dtype, device=None):
        self.cap = list(capacities)
        self.q = [torch.zeros(0, dim, dtype=dtype, device=device) for _ in capacities]
        self.pushed = [0] * len(capacities)  # rows ever pushed (more than the capacity: wrapped)

    def push(self, c, rows):
        self.q[c] = torch.cat([self.q[c], rows.detach()], 0)[-self.cap[c]:]
        self.pushed[c] += len(rows)


def contrastive_loss(rep, rep_t, prob_l, prob_u, label_l, label_u, low, high, bank, cfg,
                     official, draw, phase="both"):
    """SPEC §2.3 at feature resolution. rep (B,D,h,w) student (grad), rep_t teacher; prob_l/u
    (n,C,h,w) teacher softmax; label_l/u (n,h,w) GT / pseudo-labels (255 none); low/high (B,h,w)
    bool (labeled images: label ≠ 255). draw(n, high) → n indices in [0, high). Pushes every
    class's negatives into `bank` first, then forms the terms. Returns (loss, terms). phase
    "push" only pushes, "loss" only forms the terms: with several replicas every replica pushes
    (the public code's all-gather) before any samples."""
    B, D, h, w = rep.shape
    C = prob_l.shape[1]
    n_l = label_l.shape[0]
    z = rep.permute(0, 2, 3, 1).reshape(-1, D)  # pixels row-major over (image, row, column)
    zt = rep_t.permute(0, 2, 3, 1).reshape(-1, D)
    p = torch.cat([prob_l, prob_u]).permute(0, 2, 3, 1).reshape(-1, C)
    y = torch.cat([label_l, label_u]).reshape(-1).long()
    low, high = low.reshape(-1).bool(), high.reshape(-1).bool()
    labeled = torch.arange(y.numel(), device=y.device) < n_l * h * w
    # O(c): rank of class c in p sorted descending (ties: class order)
    order = torch.sort(p, dim=1, descending=True, stable=True)[1]
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(C, device=p.device).expand_as(order).clone())
    r_l, r_h = cfg["low_rank"], min(cfg["high_rank"], C)
    anchors, protos, low_valid = [], [], []
    for c in range(C):
        lv = (y == c) & low
        anchor = lv & (p[:, c] > cfg["delta_p"])
        mid = (rank[:, c] >= r_l) & (rank[:, c] < r_h)
        if official:  # high-valid mask (label == c) × the rank masks; labeled never qualify
            ranked = torch.where(labeled, (rank[:, c] < r_l) & (y != c), mid)
            negative = (p[:, c] < cfg["delta_n"]) & (y == c) & high & ranked
            proto_set = lv
        else:  # Eq. 14 (labeled: y ≠ c valid, O(c) < r_l) and Eq. 15 (unreliable, r_l ≤ O(c) < r_h)
            negative = torch.where(labeled, high & (y != IGNORE) & (y != c) & (rank[:, c] < r_l),
                                   high & mid)
            proto_set = anchor
        if phase != "loss":
            bank.push(c, zt[negative])
        anchors.append(anchor)
        protos.append(zt[proto_set].mean(0) if bool(proto_set.any()) else None)
        low_valid.append(bool(lv.any()))
    loop = [c for c in range(C) if (low_valid[c] if official else bool(anchors[c].any()))]
    zero = 0 * rep.sum()
    if phase == "push":
        return zero, 0
    if not loop or (official and len(loop) <= 1):
        return zero, 0
    M, N, tau = cfg["num_queries"], cfg["num_negatives"], cfg["temperature"]
    loss, terms = zero, 0
    for i, qc in enumerate(loop):
        ac = i if official else qc  # the public code's index bug: anchors of class i
        cand = z[anchors[ac]]
        queue = bank.q[qc]
        if len(cand) == 0 or len(queue) == 0:
            continue
        a = cand[draw(M, len(cand))]  # (M, D)
        neg = queue[draw(M * N, len(queue))].reshape(M, N, D)
        keys = torch.cat([protos[ac].detach().expand(M, 1, D), neg.detach()], 1)
        logits = F.cosine_similarity(a[:, None, :], keys, dim=2) / tau  # (M, 1 + N)
        loss = loss + F.cross_entropy(logits, torch.zeros(M, dtype=torch.long, device=logits.device))
        terms += 1
    return loss / len(loop), terms


# --------------------------------------------------------------------------- reference check

def _close(name, got, want, abs_tol, rel_tol, errs):
    got, want = got.double().reshape(-1), want.double().reshape(-1)
    if got.shape != want.shape:
        errs.append("%s: %d entries, expected %d" % (name, got.numel(), want.numel()))
        return
    bad = (got - want).abs() > abs_tol + rel_tol * want.abs()
    if bool(bad.any()):
        k = int(bad.nonzero()[0])
        errs.append("%s: %d of %d out of tolerance, [%d] got %.9g expected %.9g" %
                    (name, int(bad.sum()), got.numel(), k, got[k], want[k]))


def _mask(name, got, want, near, errs):
    bad = (got.reshape(-1).long() != want.reshape(-1).long()) & ~near.reshape(-1)
    if bool(bad.any()):
        errs.append("%s: %d entries differ" % (name, int(bad.sum())))


def check_reference_case(t, meta):
    """Replays one reference case (../shared/reference/u2pl/README.md) through the losses above
    in float64; returns what differed (README tolerances: losses rel 1e-4, gradients abs 1e-5 +
    rel 1e-3, entropies and thresholds abs 1e-5, masks exact but within 1e-5 of a threshold)."""
    errs = []
    official = meta["mode"] == "official"
    if meta["kind"] == "unsupervised":
        pred = t["in.predict"].double().requires_grad_(True)
        target = t["in.target"].long()
        loss, th, ent, filt, weight = unsup_loss(pred, target, t["in.teacher_logits"].double(),
                                                 float(meta["percent"]), official)
        loss.backward()
        _close("out.entropy", ent, t["out.entropy"], 1e-5, 0, errs)
        _close("out.thresh", torch.tensor([th]), t["out.thresh"], 1e-5, 0, errs)
        _mask("out.target", filt, t["out.target"], (t["out.entropy"].double() - th).abs() <= 1e-5,
              errs)
        _close("out.weight", torch.tensor([weight]), t["out.weight"], 0, 1e-4, errs)
        _close("out.loss", loss.detach().reshape(1), t["out.loss"], 0, 1e-4, errs)
        _close("out.grad_predict", pred.grad, t["out.grad_predict"], 1e-5, 1e-3, errs)
        return errs
    if meta["kind"] != "contrastive":
        return None  # ohem: the e2e run uses plain cross-entropy
    C = int(meta["num_classes"])
    cfg = dict(low_rank=int(meta["low_rank"]), high_rank=int(meta["high_rank"]),
               delta_p=float(meta["delta_p"]), delta_n=1.0, num_queries=int(meta["num_queries"]),
               num_negatives=int(meta["num_negatives"]), temperature=float(meta["temperature"]))
    caps = [int(v) for v in meta["queue_size"].split(",")]
    D = int(meta["feat_dim"])
    bank = MemoryBank(caps, D, torch.float64)
    for c in range(C):
        bank.push(c, t["in.bank.%d" % c].double())
    if official:
        recorded = [t["draw.%03d" % i].long() for i in range(int(meta["draws"]))]
    else:
        names = ["draw.%s.%d" % (k, c) for c in range(C) for k in ("anchor", "negative")]
        recorded = [t[n].long() for n in names if n in t]
    calls = []

    def replay(n, high):
        d = recorded[len(calls)]
        assert d.numel() == n and int(d.max()) < high, "draw %d: %d of %d" % (len(calls), n, high)
        calls.append(n)
        return d

    label_l = t["in.label_l"].long()
    if official:
        low, high = t["in.low_mask"].bool(), t["in.high_mask"].bool()
    else:
        valid_l = label_l != IGNORE
        low = torch.cat([valid_l, t["in.reliable_u"].bool()])
        high = torch.cat([valid_l, t["in.unreliable_u"].bool()])
    rep = t["in.rep"].double().requires_grad_(True)
    loss, _ = contrastive_loss(rep, t["in.rep_teacher"].double(), t["in.prob_l"].double(),
                               t["in.prob_u"].double(), label_l, t["in.label_u"].long(), low, high,
                               bank, cfg, official, replay)
    loss.backward()
    if len(calls) != len(recorded):
        errs.append("draws: used %d of %d" % (len(calls), len(recorded)))
    _close("out.loss", loss.detach().reshape(1), t["out.loss"], 0, 1e-4, errs)
    _close("out.grad_rep", rep.grad, t["out.grad_rep"], 1e-5, 1e-3, errs)
    for c in range(C):
        _close("out.bank.%d" % c, bank.q[c], t["out.bank.%d" % c], 0, 0, errs)
    # the mask computation on its own, from the crop-size tensors
    logits_u = t["in.crop.teacher_logits_u"].double()
    ent = entropy_of(logits_u)
    _close("out.crop.entropy_u", ent, t["out.crop.entropy_u"], 1e-5, 0, errs)
    label_u_crop = (t["in.crop.label_u"].long() if official
                    else torch.zeros(ent.shape, dtype=torch.long))  # paper: every pixel labelled
    lo, hi, lo_t, hi_t = contrastive_masks(ent, label_u_crop, float(meta["alpha_t"]), official)
    if official:
        _close("out.crop.low_thresh", torch.tensor([lo_t]), t["out.crop.low_thresh"], 1e-5, 0, errs)
        _close("out.crop.high_thresh", torch.tensor([hi_t]), t["out.crop.high_thresh"], 1e-5, 0,
               errs)
    else:
        _close("out.crop.gamma", torch.tensor([hi_t]), t["out.crop.gamma"], 1e-5, 0, errs)
    size = tuple(label_l.shape[1:])
    e_small = down_nearest(t["out.crop.entropy_u"], size)
    lo_s, hi_s = down_nearest(lo, size).bool(), down_nearest(hi, size).bool()
    want_lo = low[label_l.shape[0]:]
    want_hi = high[label_l.shape[0]:]
    _mask("low mask", lo_s, want_lo, (e_small - lo_t).abs() <= 1e-5, errs)
    _mask("high mask", hi_s, want_hi, (e_small - hi_t).abs() <= 1e-5, errs)
    return errs


def check_reference(directory):
    files = sorted(f for f in os.listdir(directory) if f.endswith(".safetensors"))
    if not files:
        raise SystemExit("no reference case in %s" % directory)
    failed = 0
    for name in files:
        t, meta = read_safetensors(os.path.join(directory, name))
        try:
            errs = check_reference_case(t, meta)
        except (AssertionError, IndexError, RuntimeError) as e:
            errs = ["error: %s" % (e or type(e).__name__)]
        if errs is None:
            print("reference %s: skipped (%s, not used by the e2e run)" % (name, meta["kind"]))
            continue
        print("reference %s: %s" % (name, "ok" if not errs else "FAIL " + "; ".join(errs)))
        failed += bool(errs)
    if failed:
        raise SystemExit("%d reference cases failed" % failed)


# --------------------------------------------------------------------------- inputs

def net_keys(model):
    """Parameter keys (optimizer / momentum order) and BN buffer keys, as in the state dict."""
    params = [k for k, _ in model.named_parameters()]
    buffers = [k for k, _ in model.named_buffers() if not k.endswith("num_batches_tracked")]
    return params, buffers


def quantised_init(seed, keys):
    """A random initial state: the network's own init (kaiming fan-out encoder convs, PyTorch
    defaults in the decoder), BN γ ~ U(0.5, 1.5), β ~ U(-0.2, 0.2), conv biases ~ U(-0.1, 0.1),
    running means ~ U(-0.2, 0.2), variances ~ U(0.5, 1.5); the classifier's last conv scaled by
    LOGIT_GAIN so the random network has confident classes (anchors need p > δp), and the rep
    head's last bias ~ U(-1, 1): its input has 4 ReLU'd channels, all zero at some pixels, whose
    feature would otherwise be the ~0.01 bias, and a cosine similarity of a near-zero vector is
    ill-conditioned (float32 noise then grew 20x an iteration). Every tensor is then rounded
    to q · 2^-e with q an integer in [-127, 127], so it is stored exactly in one byte (U8 q + 128,
    with the per-tensor scale) and reads back identically in float32 and float64."""
    torch.manual_seed(seed)
    model = U2PLNet(**NET)
    sd = model.state_dict()
    with torch.no_grad():
        for k, v in sd.items():
            if k.endswith("num_batches_tracked"):
                continue
            if k.endswith("running_mean"):
                v.uniform_(-0.2, 0.2)
            elif k.endswith("running_var"):
                v.uniform_(0.5, 1.5)
            elif v.dim() == 1 and k.rsplit(".", 1)[0] + ".running_mean" in sd:  # BN affine
                v.uniform_(0.5, 1.5) if k.endswith("weight") else v.uniform_(-0.2, 0.2)
            elif v.dim() == 1:  # conv bias
                v.uniform_(-0.1, 0.1)
        sd["decoder.classifier.8.weight"].mul_(LOGIT_GAIN)
        sd["decoder.representation.8.bias"].uniform_(-1, 1)
    q, scales, values = [], [], {}
    for k in keys:
        v = sd[k].double().reshape(-1)
        m = float(v.abs().max())
        e = int(np.ceil(np.log2(m / 127))) if m > 0 else 0
        s = 2.0 ** e
        qi = torch.clamp(torch.round(v / s), -127, 127)
        q.append((qi + 128).to(torch.uint8))
        scales.append(s)
        values[k] = (qi * s).reshape(sd[k].shape)
    return torch.cat(q), torch.tensor(scales, dtype=torch.float32), values


def smooth_images(gen, n):
    """(n, 3, H, W) uint8: a low-frequency pattern (bilinear up from 5x5 noise) plus noise, with
    a contrast and brightness per image, so the images' global means differ (the ASPP pooled
    branch's train-mode BN normalises one value per image: similar means would make it, and the
    whole step, ill-conditioned)."""
    H, W = CROP
    base = up(torch.rand(n, 3, 5, 5, generator=gen, dtype=torch.float64), (H, W))
    x = 0.8 * base + 0.2 * torch.rand(n, 3, H, W, generator=gen, dtype=torch.float64)
    gain = 0.4 + 0.6 * torch.rand(n, 1, 1, 1, generator=gen, dtype=torch.float64)
    offset = (1 - gain) * torch.rand(n, 1, 1, 1, generator=gen, dtype=torch.float64)
    return (255 * (gain * x + offset)).round().clamp(0, 255).to(torch.uint8)


def block_labels(gen, n):
    """(n, H, W) uint8: random classes on a 4x4 grid of blocks (nearest up), a band of 255 along
    one block border (as VOC's object boundaries) and a few ignored pixels."""
    H, W = CROP
    C = NET["num_classes"]
    grid = torch.randint(0, C, (n, 1, 4, 4), generator=gen).double()
    lab = F.interpolate(grid, size=(H, W), mode="nearest")[:, 0].long()
    lab[:, H // 2, :] = IGNORE
    lab[torch.rand(n, H, W, generator=gen) < 0.03] = IGNORE
    return lab.to(torch.uint8)


def normalise(img_u8, dtype):
    """SPEC §4 on 0-255 values, in float32 (as the engine's loader), then widened to dtype."""
    x = img_u8.float()
    mean = torch.tensor(MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32).view(1, 3, 1, 1)
    return ((x - mean) / std).to(dtype)


def cutmix_boxes(rs, n):
    """SPEC §3 (the public generate_cutout_mask, ratio 2) with numpy semantics: w =
    randint(W/2 + 1, W), h = round(H·W/2 / w) (half to even), x0 = randint(0, W − w + 1),
    y0 = randint(0, H − h + 1). Rows (x0, y0, w, h)."""
    H, W = CROP
    boxes = []
    for _ in range(n):
        w = int(rs.randint(int(W / 2 + 1), W))
        h = int(np.round(H * W / 2 / w))
        x0 = int(rs.randint(0, W - w + 1))
        y0 = int(rs.randint(0, H - h + 1))
        boxes.append([x0, y0, w, h])
    return torch.tensor(boxes, dtype=torch.int32)


def mix_mask(boxes):
    """(B, H, W) CutMix masks: 0 inside image i's box, 1 outside."""
    H, W = CROP
    m = torch.ones(len(boxes), H, W, dtype=torch.long)
    for i, (x0, y0, w, h) in enumerate(boxes.tolist()):
        m[i, y0:y0 + h, x0:x0 + w] = 0
    return m


def draw_dropout(gen, sites, n):
    """{site: (n, C) float32 scale}: 0 with probability p, else 1/(1 − p) in float32."""
    return {s: torch.bernoulli(torch.full((n, c), 1 - DROPOUT_P), generator=gen).div_(1 - DROPOUT_P)
            for s, c in sites.items()}


def make_inputs(seed, sites, replicas):
    """Everything random the run consumes, except the contrastive draws (drawn during it)."""
    gen = torch.Generator().manual_seed(seed)
    rs = np.random.RandomState(seed)
    sched = REPLICA_SCHEDULES[replicas]
    inp = dict(images_l=smooth_images(gen, POOL_L), labels_l=block_labels(gen, POOL_L),
               images_u=smooth_images(gen, POOL_U), iters=[])
    for k in range(SCHEDULE["epochs"] * SCHEDULE["iters_per_epoch"]):
        semi = sched["unlabeled"][k] is not None
        n = replicas * (2 * BATCH if semi else BATCH)
        boxes = [cutmix_boxes(rs, BATCH) if m else None for m in sched["mix"][k]] if semi else None
        inp["iters"].append(dict(
            labeled=sched["labeled"][k], unlabeled=sched["unlabeled"][k], boxes=boxes,
            drop_s=draw_dropout(gen, sites, n), drop_t=draw_dropout(gen, sites, n)))
    return inp


# --------------------------------------------------------------------------- training

class Margins:
    """The smallest distance of each kind of discrete decision from its threshold (`m`), and the
    quantities those decisions read (`probes`, per iteration), so a float32 replay can say how
    far float32 noise moves them."""

    def __init__(self):
        self.m, self.probes = {}, []

    def add(self, kind, values):
        values = values.detach().double().reshape(-1)
        if values.numel():
            v = float(values.abs().min())
            self.m[kind] = min(self.m.get(kind, float("inf")), v)

    def probe(self, it, name, value):
        while len(self.probes) <= it:
            self.probes.append({})
        self.probes[it][name] = value.detach().double().clone()


# Which probed quantity each kind of decision reads.
DECISION_PROBES = {"pseudo-label argmax": "teacher eval logits",
                   "unsup entropy vs gamma": "entropy", "contrastive entropy vs low": "entropy",
                   "contrastive entropy vs high": "entropy", "p(c) vs delta_p": "teacher prob",
                   "probability rank gaps": "teacher prob"}


def safety(ref, f32):
    """{decision: margin / (2 · max float32 deviation of what it reads)}: both sides of a
    decision (a value and a threshold interpolated from such values, or two probabilities) move
    by up to that deviation."""
    dev = {}
    for a, b in zip(ref.probes, f32.probes):
        for k in a:
            dev[k] = max(dev.get(k, 0.0), float((a[k] - b[k]).abs().max()))
    return {kind: m / max(2 * dev[DECISION_PROBES[kind]], 1e-12) for kind, m in ref.m.items()}, dev


def run(preset, init_s, init_t, inp, dtype, replay=None, replicas=1):
    """The iterations of SCHEDULE in `dtype`. replay: recorded contrastive draws (a list per
    iteration) to reuse; otherwise drawn with torch.randint (seeded) and returned. replicas: the
    public code's GPU count, simulated: every network runs on all replicas' images at once (BN
    over all of them: SyncBN), laid out replica after replica ([labeled | mixed unlabeled] each);
    the losses run per replica and the loss is their mean (DDP's gradient mean); every replica
    pushes its negatives (the all-gather) before any replica samples; the official λc is divided
    by the replica count (all_reduce / world_size). Figures: replica means (terms and reliable
    pixels: sums)."""
    pr = PRESETS[preset]
    official = pr["official"]
    R = replicas
    student = U2PLNet(**NET).to(dtype)
    teacher = U2PLNet(**NET).to(dtype)
    student.load_state_dict({k: v.to(dtype) for k, v in init_s.items()}, strict=False)
    teacher.load_state_dict({k: v.to(dtype) for k, v in init_t.items()}, strict=False)
    for p in teacher.parameters():
        p.requires_grad_(False)
    lr = OPTIM["lr"]
    opt = torch.optim.SGD([{"params": list(student.encoder.parameters()), "lr": lr},
                           {"params": list(student.decoder.parameters()),
                            "lr": lr * OPTIM["head_lr_mult"]}],
                          lr=lr, momentum=OPTIM["momentum"], weight_decay=OPTIM["weight_decay"])
    base_lrs = [g["lr"] for g in opt.param_groups]
    C = NET["num_classes"]
    caps = [pr["queue_size_background"]] + [pr["queue_size"]] * (C - 1)
    D = 256 // NET["width_divisor"]
    bank = MemoryBank(caps, D, dtype)
    epochs, ipe = SCHEDULE["epochs"], SCHEDULE["iters_per_epoch"]
    sup_only = SCHEDULE["sup_only_epoch"]
    max_it = epochs * ipe
    H, W = CROP
    b = BATCH
    contra_weight = pr["contra_weight"] / (R if official else 1)
    img_l_pool = normalise(inp["images_l"], dtype)
    img_u_pool = normalise(inp["images_u"], dtype)
    lab_l_pool = inp["labels_l"].long()
    draw_gen = torch.Generator().manual_seed(12345)
    margins = Margins()
    outs, draws_all = [], []
    for it, x in enumerate(inp["iters"]):
        epoch = it // ipe
        factor = (1 - it / max_it) ** OPTIM["lr_power"]
        for g, base in zip(opt.param_groups, base_lrs):
            g["lr"] = base * factor
        o = dict.fromkeys(OUT_FIELDS, 0.0)
        o["ema"], o["lr"] = -1.0, base_lrs[0] * factor
        img_l = img_l_pool[x["labeled"]]
        lab_l = lab_l_pool[x["labeled"]]
        drop_s = {k: v.to(dtype) for k, v in x["drop_s"].items()}
        drop_t = {k: v.to(dtype) for k, v in x["drop_t"].items()}
        draws = []
        if epoch < sup_only:  # warm start: supervised only; the teacher's BN statistics still move
            student.train()
            out = student(img_l, drop_s)
            pred_up = up(out["pred"], (H, W))
            sups = [F.cross_entropy(pred_up[r * b:(r + 1) * b], lab_l[r * b:(r + 1) * b], ignore_index=IGNORE)
                    for r in range(R)]
            teacher.train()
            with torch.no_grad():
                teacher(img_l, drop_t)
            loss = sum(sups) / R + 0 * out["rep"].sum()  # every parameter has a gradient (weight decay)
            o["sup"] = sum(float(v) for v in sups) / R
        else:
            if epoch == sup_only:  # handover: the teacher's parameters are the student's
                for tp, sp in zip(teacher.parameters(), student.parameters()):
                    tp.data = sp.data
                if pr["teacher_copy_bn"]:  # paper: the BN running statistics too
                    with torch.no_grad():
                        for bt, bs in zip(teacher.buffers(), student.buffers()):
                            bt.copy_(bs)
            img_u = img_u_pool[x["unlabeled"]]
            teacher.eval()
            with torch.no_grad():
                logits_u = up(teacher(img_u)["pred"], (H, W))
                prob_u_eval = torch.softmax(logits_u, 1)
                top2 = logits_u.topk(2, dim=1)[0]
                margins.add("pseudo-label argmax", top2[:, 0] - top2[:, 1])
                margins.probe(it, "teacher eval logits", logits_u)
                label_u = prob_u_eval.argmax(1)
            parts, label_parts = [], []
            for r in range(R):  # each replica mixes within its own images
                sl = slice(r * b, (r + 1) * b)
                x_u, y_u = img_u[sl], label_u[sl]
                if x["boxes"][r] is not None:
                    m = mix_mask(x["boxes"][r])
                    nxt = [(i + 1) % b for i in range(b)]
                    x_u = x_u * m[:, None].to(dtype) + x_u[nxt] * (1 - m[:, None]).to(dtype)
                    y_u = y_u * m + y_u[nxt] * (1 - m)
                parts += [img_l[sl], x_u]
                label_parts.append(y_u)
            label_u = torch.cat(label_parts)
            image_all = torch.cat(parts)
            student.train()
            out = student(image_all, drop_s)
            pred_all, rep_all = out["pred"], out["rep"]
            pred_up = up(pred_all, (H, W))
            teacher.train()
            with torch.no_grad():
                out_t = teacher(image_all, drop_t)
                pred_t, rep_t = out_t["pred"], out_t["rep"]
                prob_t = torch.softmax(pred_t, 1)
            alpha_u = (100 - UNSUP["drop_percent"]) * (1 - epoch / epochs)
            alpha_c = CONTRA["low_entropy_threshold"] * (1 - epoch / epochs)
            size = tuple(pred_all.shape[2:])
            # the crop pixels the contrastive masks' nearest downsampling reads
            sampled = down_nearest(torch.arange(H * W).reshape(1, H, W).expand(b, H, W), size).long()
            r_l, r_h = CONTRA["low_rank"], min(CONTRA["high_rank"], C)
            loss = 0
            replica_in, ents = [], []
            for r in range(R):
                own = slice(2 * r * b, 2 * r * b + b)  # replica r's labeled images in the batch
                mixed = slice(2 * r * b + b, 2 * (r + 1) * b)  # and its mixed unlabeled ones
                lab_r, y_u = lab_l[r * b:(r + 1) * b], label_u[r * b:(r + 1) * b]
                sup = F.cross_entropy(pred_up[own], lab_r, ignore_index=IGNORE)
                logits_t_up = up(pred_t[mixed], (H, W))
                unsup, thresh, ent, filtered, _ = unsup_loss(pred_up[mixed], y_u, logits_t_up,
                                                             100 - alpha_u, official)
                margins.add("unsup entropy vs gamma", (ent - thresh)[ent != thresh])
                ents.append(ent)
                ent_s = ent.reshape(b, -1).gather(1, sampled.reshape(b, -1))
                o["sup"] += float(sup) / R
                o["unsup"] += float(unsup) / R
                o["thresh"] += thresh / R
                o["reliable"] += float((filtered != IGNORE).sum())
                loss = loss + (sup + UNSUP["loss_weight"] * unsup) / R
                with torch.no_grad():
                    low_u, high_u, low_t, high_t = contrastive_masks(ent, y_u, alpha_c, official)
                    margins.add("contrastive entropy vs low", (ent_s - low_t)[ent_s != low_t])
                    margins.add("contrastive entropy vs high", (ent_s - high_t)[ent_s != high_t])
                    valid_l = (down_nearest(lab_r, size) != IGNORE)
                    low_all = torch.cat([valid_l, down_nearest(low_u, size).bool()])
                    high_all = torch.cat([valid_l, down_nearest(high_u, size).bool()])
                    lab_l_s = down_nearest(lab_r, size).long()
                    lab_u_s = down_nearest(y_u, size).long()
                    lab_all = torch.cat([lab_l_s, lab_u_s])
                    prob_r = prob_t[2 * r * b:2 * (r + 1) * b]
                    # δp only decides where the pixel is low-valid for its own class
                    pc = prob_r.gather(1, lab_all.clamp(max=C - 1)[:, None])[:, 0]
                    margins.add("p(c) vs delta_p", (pc - CONTRA["delta_p"])[low_all & (lab_all != IGNORE)])
                    # rank bounds decide at labeled pixels (O(c) < r_l) and unreliable unlabeled ones
                    sp = prob_r.sort(1, descending=True)[0]
                    gaps_l = sp[:b, r_l - 1] - sp[:b, r_l]
                    margins.add("probability rank gaps", gaps_l[lab_l_s != IGNORE])
                    for rank in (r_l, r_h):
                        if 0 < rank < C:
                            gaps_u = sp[b:, rank - 1] - sp[b:, rank]
                            margins.add("probability rank gaps", gaps_u[high_all[b:]])
                o["contra_low"] += low_t / R
                o["contra_high"] += high_t / R
                replica_in.append((rep_all[2 * r * b:2 * (r + 1) * b], rep_t[2 * r * b:2 * (r + 1) * b],
                                   prob_r[:b], prob_r[b:], lab_l_s, lab_u_s, low_all, high_all))
            margins.probe(it, "entropy", torch.cat(ents))
            margins.probe(it, "teacher prob", prob_t)

            def draw(n, high):
                if replay is not None:
                    d = replay[it][len(draws)]
                    assert d[1] == high and len(d[0]) == n, "replayed draw does not fit"
                    idx = torch.tensor(d[0])
                else:
                    idx = torch.randint(high, (n,), generator=draw_gen)
                draws.append((idx.tolist(), high))
                return idx

            cfg = dict(CONTRA)
            # one replica pushes and samples at once; several push all, then each samples
            phases = ["both"] if R == 1 else ["push", "loss"]
            for phase in phases:
                for r, args in enumerate(replica_in):
                    contra, terms = contrastive_loss(*args, bank, cfg, official, draw, phase)
                    if phase == "push":
                        continue
                    loss = loss + contra_weight * contra / R
                    o["contra"] += float(contra) / R
                    o["terms"] += float(terms)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if epoch >= sup_only:
            ema = min(1 - 1 / (it - ipe * sup_only + 1), EMA_CAP)
            with torch.no_grad():
                for tp, sp in zip(teacher.parameters(), student.parameters()):
                    tp.data = ema * tp.data + (1 - ema) * sp.data
            o["ema"] = ema
        outs.append(o)
        draws_all.append(draws)
    momentum = [opt.state[p]["momentum_buffer"] for p in student.parameters()]
    return dict(outs=outs, draws=draws_all, student=student.state_dict(),
                teacher=teacher.state_dict(), momentum=momentum, bank=bank.q,
                pushed=bank.pushed, margins=margins)


# --------------------------------------------------------------------------- dump

def flat(state, keys):
    return torch.cat([state[k].reshape(-1) for k in keys])


def deviations(ref, other, pkeys, bkeys):
    """Max |float32 − float64| per quantity (loss terms relative to their value, states
    normwise: relative to the largest |value| of each tensor)."""
    dev = {}
    for f in ("sup", "unsup", "contra", "thresh", "contra_low", "contra_high"):
        dev[f] = max(abs(a[f] - b[f]) / max(abs(a[f]), 1e-30) for a, b in zip(ref["outs"], other["outs"]))
    dev["reliable/terms exact"] = float(all(a["reliable"] == b["reliable"] and a["terms"] == b["terms"]
                                            for a, b in zip(ref["outs"], other["outs"])))

    def normwise(xs, ys):
        return max([float((x.double() - y.double()).abs().max() / max(float(x.abs().max()), 1e-30))
                    for x, y in zip(xs, ys)] + [0.0])

    for who in ("student", "teacher"):
        dev[who + " params"] = normwise([ref[who][k] for k in pkeys], [other[who][k] for k in pkeys])
        dev[who + " buffers"] = normwise([ref[who][k] for k in bkeys], [other[who][k] for k in bkeys])
    dev["momentum"] = normwise(ref["momentum"], other["momentum"])
    dev["bank"] = normwise([q for q in ref["bank"] if len(q)], [q for q in other["bank"] if len(q)])
    return dev


def dump(preset, out_path, seed, replicas, min_safety):
    probe = U2PLNet(**NET)
    pkeys, bkeys = net_keys(probe)
    sites = probe.site_channels()
    keys = pkeys + bkeys
    for attempt in range(50 if replicas == 1 else 1000):  # more decisions with more replicas: rarer seeds
        s = seed + attempt
        q_s, sc_s, init_s = quantised_init(1000 + s, keys)
        q_t, sc_t, init_t = quantised_init(2000 + s, keys)
        inp = make_inputs(s, sites, replicas)
        ref = run(preset, init_s, init_t, inp, torch.float64, replicas=replicas)
        if not all(o["terms"] > 0 for o in ref["outs"][1:]):
            print("seed %d: an iteration without a contrastive term; next seed" % s)
            continue
        try:
            f32 = run(preset, init_s, init_t, inp, torch.float32, replay=ref["draws"], replicas=replicas)
        except AssertionError:
            print("seed %d: the float32 replay took another branch; next seed" % s)
            continue
        ratios, probe_dev = safety(ref["margins"], f32["margins"])
        worst = min(ratios.values())
        print("seed %d: decision margin / float32 noise at worst %.1f (%s)" % (s, worst, ", ".join(
            "%s %.1e / %.1e" % (k, ref["margins"].m[k], 2 * probe_dev[DECISION_PROBES[k]])
            for k in sorted(ratios))))
        if worst < min_safety:
            continue
        dev = deviations(ref, f32, pkeys, bkeys)
        too_far = {k: dev[k] for k in F32_DEV_CHECKED if dev[k] > MAX_F32_DEV}
        if not too_far:
            break
        print("seed %d: PyTorch's float32 run is too far from float64 (%s); next seed" % (s, ", ".join(
            "%s %.1e" % kv for kv in too_far.items())))
    else:
        raise SystemExit("no seed with every decision margin %gx above float32 noise and PyTorch's float32 run "
                         "within %g of float64" % (min_safety, MAX_F32_DEV))
    print("PyTorch float32 vs float64 (max relative error): " +
          ", ".join("%s %.1e" % kv for kv in dev.items()))

    t = {"init.student.q": q_s, "init.student.scale": sc_s,
         "init.teacher.q": q_t, "init.teacher.scale": sc_t,
         "pool.images_l": inp["images_l"], "pool.labels_l": inp["labels_l"],
         "pool.images_u": inp["images_u"]}
    site_names = list(sites)
    for k, x in enumerate(inp["iters"]):
        p = "iter.%d." % k
        t[p + "labeled"] = torch.tensor(x["labeled"], dtype=torch.int32)
        if x["unlabeled"] is not None:
            t[p + "unlabeled"] = torch.tensor(x["unlabeled"], dtype=torch.int32)
        for r, boxes in enumerate(x["boxes"] or []):  # one replica: "boxes"; several: "boxes.<r>"
            if boxes is not None:
                t[p + ("boxes" if replicas == 1 else "boxes.%d" % r)] = boxes
        t[p + "dropout.student"] = torch.cat([x["drop_s"][s] for s in site_names], 1)
        t[p + "dropout.teacher"] = torch.cat([x["drop_t"][s] for s in site_names], 1)
        d = ref["draws"][k]
        t[p + "draws"] = torch.tensor([i for idx, _ in d for i in idx], dtype=torch.int32)
        t[p + "draw_sizes"] = torch.tensor([len(idx) for idx, _ in d], dtype=torch.int32)
        t[p + "draw_highs"] = torch.tensor([h for _, h in d], dtype=torch.int32)
        t[p + "out"] = torch.tensor([ref["outs"][k][f] for f in OUT_FIELDS], dtype=torch.float64)
    t["final.student"] = flat(ref["student"], keys).float()
    t["final.teacher"] = flat(ref["teacher"], keys).float()
    t["final.momentum"] = torch.cat([m.reshape(-1) for m in ref["momentum"]]).float()
    for c, q in enumerate(ref["bank"]):
        t["final.bank.%d" % c] = q.float()

    meta = dict(format="u2pl-train-e2e", preset=preset, seed=s, torch=torch.__version__,
                reference="float64 PyTorch run (tools/pytorch/torch_u2pl_train.py)",
                param_keys=",".join(pkeys), buffer_keys=",".join(bkeys),
                numels=",".join(str(init_s[k].numel()) for k in keys),
                dropout_sites=",".join("%s:%d" % (s_, c) for s_, c in sites.items()),
                out_fields=",".join(OUT_FIELDS), batch=BATCH, replicas=replicas, height=CROP[0], width=CROP[1],
                iterations=len(inp["iters"]), mean=",".join(map(str, MEAN)),
                std=",".join(map(str, STD)), ema_decay=EMA_CAP,
                contra_loss_weight=PRESETS[preset]["contra_weight"],
                contra_queue_size=PRESETS[preset]["queue_size"],
                contra_queue_size_background=PRESETS[preset]["queue_size_background"],
                teacher_copy_bn=int(PRESETS[preset]["teacher_copy_bn"]),
                min_safety="%.1f" % worst)
    meta.update({k: (",".join(map(str, v)) if isinstance(v, tuple) else
                     int(v) if isinstance(v, bool) else v) for k, v in NET.items()})
    meta.update(SCHEDULE)
    meta.update(OPTIM)
    meta.update({"unsup_" + k: v for k, v in UNSUP.items()})
    meta.update({"contra_" + k: v for k, v in CONTRA.items()})
    meta.update({"f32_dev." + k.replace(" ", "_").replace("/", "_"): "%.2e" % v for k, v in dev.items()})
    write_safetensors(out_path, t, meta)
    for k, o in enumerate(ref["outs"]):
        print("iteration %d: " % k + ", ".join("%s %.6g" % (f, o[f]) for f in OUT_FIELDS))
    print("bank: %s rows held of %s pushed" % ([len(q) for q in ref["bank"]], ref["pushed"]))
    print("%s: %d bytes" % (out_path, os.path.getsize(out_path)))


def main():
    ap = argparse.ArgumentParser(
        description="U2PL training iterations in PyTorch (float64), dumped for "
                    "tests/test_train_e2e.cpp; or a replay of the loss reference vectors.")
    ap.add_argument("--preset", choices=sorted(PRESETS), help="paper | official")
    ap.add_argument("--out", help="the dump to write (safetensors)")
    ap.add_argument("--seed", type=int, default=0, help="first seed tried")
    ap.add_argument("--min-safety", type=float, default=MIN_SAFETY,
                    help="the smallest decision margin / float32 noise a seed must reach (default %(default)s)")
    ap.add_argument("--replicas", type=int, choices=sorted(REPLICA_SCHEDULES), default=1,
                    help="the public code's GPU count, simulated (SPEC §8): 1 or 2")
    ap.add_argument("--check-reference", metavar="DIR",
                    help="replay the loss reference vectors of DIR (e.g. ../shared/reference/u2pl)"
                         " through the losses here; one line per case, ok or FAIL")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.check_reference:
        check_reference(args.check_reference)
    if args.preset:
        if not args.out:
            ap.error("--preset needs --out")
        dump(args.preset, args.out, args.seed, args.replicas, args.min_safety)
    elif not args.check_reference:
        ap.print_help()


if __name__ == "__main__":
    main()
