#!/usr/bin/python3
# Writes the Tier 2 fixtures (STYLE 13) into tests/fixtures/: per layer family, inputs,
# parameters, outputs and autograd gradients of L = sum(w * y) for a stored random w, computed by
# PyTorch (float32, CPU, one thread, fixed seeds). Read by tests/test_layers_fixtures*.cpp. Run:
#   /usr/bin/python3 tools/pytorch/gen_fixtures.py
import json
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures")
DTYPES = {torch.float32: ("F32", "<f4"), torch.float64: ("F64", "<f8"), torch.int32: ("I32", "<i4"),
          torch.int64: ("I64", "<i8"), torch.uint8: ("U8", "u1")}
IGNORE = 255


def write_safetensors(path, tensors, meta):
    """The safetensors container: u64 LE header length, JSON header padded with spaces to a
    multiple of 8, then the raw little-endian data in header order."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        code, np_type = DTYPES[t.dtype]
        blob = t.numpy().astype(np_type).tobytes()
        header[name] = {"dtype": code, "shape": list(t.shape),
                        "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    header["__metadata__"] = {k: str(v) for k, v in sorted(meta.items())}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"  # written whole, then renamed into place
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


class Family:
    """One fixture file: tensors named '<kind>.<case>.<field>', settings in metadata under the
    same prefix, and '<kind>.cases' counting the cases of each kind."""

    def __init__(self, name):
        self.name, self.tensors, self.meta = name, {}, {}

    def case(self, kind, settings, **tensors):
        k = int(self.meta.get(kind + ".cases", 0))
        self.meta[kind + ".cases"] = k + 1
        for key, v in settings.items():
            self.meta["%s.%d.%s" % (kind, k, key)] = v
        for key, t in tensors.items():
            self.tensors["%s.%d.%s" % (kind, k, key)] = t

    def write(self):
        path = os.path.join(OUT, self.name + ".safetensors")
        write_safetensors(path, self.tensors, self.meta)
        return path


def leaf(t):
    return t.detach().clone().requires_grad_(True)


def weighted_grads(y, *inputs):
    """w ~ N(0, 1) shaped like y, and the gradients of sum(w * y) with respect to inputs."""
    w = torch.randn(y.shape)
    return (w,) + torch.autograd.grad((w * y).sum(), inputs)


def distinct(*shape):
    """Tie-free values (a scaled permutation), so max-pool windows have one maximum."""
    n = int(np.prod(shape))
    return (torch.randperm(n).float() / n * 4 - 2).reshape(shape)


def gen_conv2d():
    fam = Family("conv2d")
    # (name, x shape, cout, k, stride, pad, dilation, bias)
    specs = [("3x3 s2 p1 no bias", (2, 3, 9, 11), 4, 3, 2, 1, 1, False),
             ("3x3 dilation 2 pad 2, bias", (1, 3, 8, 10), 5, 3, 1, 2, 2, True),
             ("1x1 with bias", (2, 4, 5, 6), 3, 1, 1, 0, 1, True),
             ("3x3 dilation 12 pad 12, small input", (1, 2, 5, 7), 3, 3, 1, 12, 12, False),
             ("3x3 s2 p0, odd non-square input", (1, 3, 7, 13), 4, 3, 2, 0, 1, True)]
    for name, xs, cout, k, stride, pad, dil, bias in specs:
        x = leaf(torch.randn(xs))
        weight = leaf(torch.randn(cout, xs[1], k, k) * 0.3)
        b = leaf(torch.randn(cout)) if bias else None
        y = F.conv2d(x, weight, b, stride=stride, padding=pad, dilation=dil)
        inputs = (x, weight) + ((b,) if bias else ())
        w, *g = weighted_grads(y, *inputs)
        t = dict(x=x, weight=weight, y=y, w=w, dx=g[0], dweight=g[1])
        if bias:
            t.update(bias=b, dbias=g[2])
        fam.case("conv2d", dict(name=name, cin=xs[1], cout=cout, k=k, stride=stride, pad=pad,
                                dilation=dil, bias=int(bias)), **t)
    return fam


def gen_batchnorm():
    fam = Family("batchnorm")
    for train in (True, False):
        bn = torch.nn.BatchNorm2d(3)  # eps 1e-5, momentum 0.1
        with torch.no_grad():
            bn.weight.copy_(torch.randn(3) * 0.5 + 1)
            bn.bias.copy_(torch.randn(3) * 0.5)
            bn.running_mean.copy_(torch.randn(3))
            bn.running_var.copy_(torch.rand(3) + 0.5)
        mean0, var0 = bn.running_mean.clone(), bn.running_var.clone()
        bn.train(train)
        x = leaf(torch.randn(2, 3, 4, 5) * 2 + 3)
        y = bn(x)
        w, dx, dweight, dbias = weighted_grads(y, x, bn.weight, bn.bias)
        fam.case("batchnorm", dict(mode="train" if train else "eval", eps=bn.eps,
                                   momentum=bn.momentum),
                 x=x, weight=bn.weight, bias=bn.bias, running_mean=mean0, running_var=var0,
                 running_mean_after=bn.running_mean, running_var_after=bn.running_var,
                 y=y, w=w, dx=dx, dweight=dweight, dbias=dbias)
    return fam


def gen_elementwise():
    fam = Family("elementwise")
    x0 = torch.randn(2, 3, 4, 5)
    x = leaf(torch.sign(x0) * (0.05 + x0.abs()))  # away from the kink at 0
    y = torch.relu(x)
    w, dx = weighted_grads(y, x)
    fam.case("relu", {}, x=x, y=y, w=w, dx=dx)
    p = 0.1
    x = leaf(torch.randn(4, 6, 3, 2))
    mask = (torch.rand(4, 6) >= p).float() / (1 - p)  # the channel scale, an input (STYLE 13)
    assert (mask == 0).any() and (mask != 0).any()
    y = x * mask[:, :, None, None]
    w, dx = weighted_grads(y, x)
    fam.case("dropout2d", dict(p=p), x=x, scale=mask, y=y, w=w, dx=dx)
    return fam


def gen_pool():
    fam = Family("pool")
    # (name, x shape, k, stride, pad, ceil_mode)
    specs = [("k3 s2 p1 ceil, 7x9", (1, 2, 7, 9), 3, 2, 1, True),
             ("k3 s2 p1 ceil, 13x11", (2, 2, 13, 11), 3, 2, 1, True),
             ("k3 s2 p1 ceil, 8x10: ceil adds a window", (1, 2, 8, 10), 3, 2, 1, True),
             ("k3 s3 p1 ceil, 5x8: ceil's last window starts in the padding, dropped",
              (1, 2, 5, 8), 3, 3, 1, True),
             ("k3 s2 p1 floor, 8x10", (1, 2, 8, 10), 3, 2, 1, False)]
    for name, xs, k, stride, pad, ceil in specs:
        x = leaf(distinct(*xs))
        y = F.max_pool2d(x, k, stride, pad, ceil_mode=ceil)
        w, dx = weighted_grads(y, x)
        fam.case("maxpool", dict(name=name, k=k, stride=stride, pad=pad, ceil_mode=int(ceil)),
                 x=x, y=y, w=w, dx=dx)
    x = leaf(torch.randn(2, 3, 5, 7))
    y = F.adaptive_avg_pool2d(x, 1)
    w, dx = weighted_grads(y, x)
    fam.case("gap", {}, x=x, y=y, w=w, dx=dx)
    return fam


def nearest_labels(lab, size):
    """Labels resized as the public code does: through float32 nearest, back to integers."""
    return F.interpolate(lab[:, None].float(), size=size, mode="nearest")[:, 0].round()


def gen_resize():
    fam = Family("resize")
    for xs, size in [((1, 2, 5, 7), (13, 17)), ((1, 2, 13, 17), (5, 6)), ((2, 2, 5, 7), (1, 1)),
                     ((2, 3, 1, 1), (5, 6))]:
        x = leaf(torch.randn(xs))
        y = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        w, dx = weighted_grads(y, x)
        fam.case("bilinear", dict(align_corners=1), x=x, y=y, w=w, dx=dx)
    for xs, size in [((1, 2, 5, 7), (12, 9)), ((1, 2, 13, 11), (5, 4))]:
        x = torch.randn(xs)
        fam.case("nearest", {}, x=x, y=F.interpolate(x, size=size, mode="nearest"))
    # Labels: a small map with ignore pixels, and a thin 513 -> 189 map whose row r holds r, so
    # float32 index rounding shows (SPEC: dst row 21 reads src row 56, not 57).
    lab = torch.randint(0, 21, (1, 13, 11))
    lab[torch.rand(lab.shape) < 0.2] = IGNORE
    rows = torch.arange(513)[None, :, None].repeat(1, 1, 7)
    for x, size in [(lab, (5, 4)), (rows, (189, 7))]:
        y = nearest_labels(x, size)
        fam.case("nearest_labels", {}, x=x.int(), y=y.int())
    assert int(fam.tensors["nearest_labels.1.y"][0, 21, 0]) == 56
    m = (torch.rand(1, 6, 5) < 0.5).to(torch.uint8)
    fam.case("nearest_mask", {}, x=m, y=nearest_labels(m, (11, 13)).to(torch.uint8))
    return fam


def gen_concat():
    fam = Family("concat")
    xs = [leaf(torch.randn(2, c, 3, 4)) for c in (2, 3, 1)]
    y = torch.cat(xs, dim=1)
    w, *dxs = weighted_grads(y, *xs)
    t = dict(y=y, w=w)
    for i, (x, dx) in enumerate(zip(xs, dxs)):
        t["x%d" % i], t["dx%d" % i] = x, dx
    fam.case("concat", dict(parts=len(xs)), **t)
    return fam


def ohem_public(pred, target, thresh, min_kept):
    """ProbOhemCrossEntropy2d.forward of the public U2PL code (u2pl/utils/loss_helper.py),
    returning the label map it hands to CrossEntropyLoss(ignore_index=255)."""
    b, c, h, w = pred.size()
    target = target.view(-1)
    valid_mask = target.ne(IGNORE)
    target = target * valid_mask.long()
    num_valid = valid_mask.sum()
    prob = F.softmax(pred, dim=1)
    prob = (prob.transpose(0, 1)).reshape(c, -1)
    if min_kept > num_valid:
        pass
    elif num_valid > 0:
        prob = prob.masked_fill_(~valid_mask, 1)
        mask_prob = prob[target, torch.arange(len(target), dtype=torch.long)]
        threshold = thresh
        if min_kept > 0:
            _, index = mask_prob.sort()
            threshold_index = index[min(len(index), min_kept) - 1]
            if mask_prob[threshold_index] > thresh:
                threshold = mask_prob[threshold_index]
            kept_mask = mask_prob.le(threshold)
            target = target * kept_mask.long()
            valid_mask = valid_mask * kept_mask
    target = target.masked_fill_(~valid_mask, IGNORE)
    return target.view(b, h, w)


def ce_case(fam, kind, settings, logits, labels, **extra):
    """Mean cross-entropy (ignore 255) of logits against labels (for OHEM the kept map), scaled
    by a stored scalar w; 'valid' counts the non-ignored pixels of labels."""
    x = leaf(logits)
    if (labels != IGNORE).any():
        loss = F.cross_entropy(x, labels, ignore_index=IGNORE)
        w = torch.randn(1)
        (dx,) = torch.autograd.grad(w[0] * loss, (x,))
        loss = loss.reshape(1)
    else:
        # All pixels ignored: torch's mean over zero pixels is nan (0/0). The engine defines the
        # loss as 0 with zero gradient (SPEC, top), so those values are written explicitly.
        loss, w, dx = torch.zeros(1), torch.randn(1), torch.zeros_like(x)
    fam.case(kind, dict(settings, ignore_index=IGNORE, valid=int((labels != IGNORE).sum())),
             logits=x, labels=labels.int(), loss=loss, w=w, dlogits=dx, **extra)


def gen_loss():
    fam = Family("loss")
    x = leaf(torch.randn(2, 5, 3, 4) * 2)
    y = F.softmax(x, dim=1)
    w, dx = weighted_grads(y, x)
    fam.case("softmax", dict(dim=1), x=x, y=y, w=w, dx=dx)
    labels = torch.randint(0, 5, (2, 4, 6))
    labels[torch.rand(labels.shape) < 0.25] = IGNORE
    ce_case(fam, "ce", {}, torch.randn(2, 5, 4, 6) * 2, labels)
    ce_case(fam, "ce", {}, torch.randn(1, 5, 3, 4), torch.full((1, 3, 4), IGNORE))
    # OHEM: logits peaked at the target, so most p_gt lie above thresh and a few below.
    thresh = 0.7
    target = torch.randint(0, 4, (2, 5, 6))
    logits = torch.randn(2, 4, 5, 6) + 3 * F.one_hot(target, 4).permute(0, 3, 1, 2)
    labels = target.clone()
    labels[torch.rand(labels.shape) < 0.15] = IGNORE
    valid = labels != IGNORE
    p = F.softmax(logits, 1).gather(1, (labels * valid)[:, None])[:, 0][valid].sort().values
    low = int((p <= thresh).sum())
    assert 2 <= low < len(p) - 2
    cases = [("min_kept > #valid: all valid pixels kept", len(p) + 10),
             ("kth smallest p_gt > thresh: threshold = kth", (low + len(p)) // 2),
             ("kth smallest p_gt <= thresh: threshold = thresh", low // 2)]
    for branch, min_kept in cases:
        kept = ohem_public(logits, labels.clone(), thresh, min_kept)
        n_kept = int((kept != IGNORE).sum())
        if min_kept > len(p):
            assert n_kept == len(p)
        else:
            assert n_kept == (min_kept if p[min_kept - 1] > thresh else low)
        settings = dict(branch=branch, thresh=thresh, min_kept=min_kept, input_valid=len(p))
        ce_case(fam, "ohem", settings, logits, kept, input_labels=labels.int())
    return fam


def gen_sgd():
    fam = Family("sgd")
    lrs, momentum, wd = (0.01, 0.1), 0.9, 1e-4
    shapes, groups = [(3, 4), (5,), (2, 3)], [0, 0, 1]
    ps = [torch.nn.Parameter(torch.randn(s) * 2) for s in shapes]
    opt = torch.optim.SGD([{"params": [q for q, g in zip(ps, groups) if g == i], "lr": lr}
                           for i, lr in enumerate(lrs)], lr=lrs[0], momentum=momentum,
                          weight_decay=wd)
    t = {"p%d.before" % i: q.detach().clone() for i, q in enumerate(ps)}
    for step in (1, 2):
        for i, q in enumerate(ps):
            q.grad = torch.randn(q.shape)
            t["p%d.grad%d" % (i, step)] = q.grad.clone()
        opt.step()
        for i, q in enumerate(ps):
            t["p%d.after%d" % (i, step)] = q.detach().clone()
            t["p%d.momentum%d" % (i, step)] = opt.state[q]["momentum_buffer"].clone()
    settings = dict(params=len(ps), lr0=lrs[0], lr1=lrs[1], momentum=momentum, weight_decay=wd,
                    dampening=0, nesterov=0)
    settings.update({"p%d.group" % i: g for i, g in enumerate(groups)})
    fam.case("sgd", settings, **t)
    return fam


def main():
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    total = 0
    for seed, gen in enumerate([gen_conv2d, gen_batchnorm, gen_elementwise, gen_pool, gen_resize,
                                gen_concat, gen_loss, gen_sgd]):
        torch.manual_seed(1000 + seed)  # per family: editing one leaves the others' bytes alone
        path = gen().write()
        total += os.path.getsize(path)
        print("%-40s %7d bytes" % (os.path.relpath(path), os.path.getsize(path)))
    print("total %d bytes" % total)


if __name__ == "__main__":
    main()
