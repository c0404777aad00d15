#!/usr/bin/python3
"""Records the first iterations of the public U2PL training (issue 16): runs the public
train_semi.py (read from a checkout of the public repository, never copied) on this CPU, with its
own model, loaders, transforms, optimizer groups, learning-rate scheduler, loss and training loop,
and writes what `u2pl_replay` needs to replay the same iterations through the engine: the
student's initial parameters and buffers, each iteration's labeled batch as the public loader
gave it (normalised images, labels), the student's Dropout2d scales, the supervised loss and the
learning rate of each parameter group; and the student's parameters and buffers after the
iterations of --snapshots.

Only warm-start iterations are recorded (epochs before trainer.sup_only_epoch: the labeled batch
alone trains the student), so --iters must stay within them.

Usage: official_trace.py OFFICIAL_DIR CONFIG.yaml OUT.safetensors [--seed S] [--iters N]
                         [--snapshots "1 N"]
       official_trace.py --compare A.safetensors B.safetensors
  CONFIG    a public-style config (../shared/peer/synth_semi8.yaml.in filled in, for example)
  --iters   iterations to record (default: one epoch)
Threads: OMP_NUM_THREADS (1 when unset).
  --compare two traces of the same run recorded apart (another thread count, another machine):
            how far the public code drifts from itself, the yardstick for u2pl_replay's report;
            the same figures as u2pl_replay, B against A
Needs /usr/bin/python3 with Debian's python3-torch, python3-torchvision, python3-yaml,
python3-pil, python3-scipy."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_fixtures import write_safetensors  # noqa: E402
from official_import import on_cpu, prepare  # noqa: E402


class Done(Exception):
    """Raised after the last recorded iteration's optimizer step, to leave the public loop."""


def compare(path_a, path_b):
    """Prints the loss per iteration of two traces and, at each common snapshot, the parameters'
    and BN statistics' ‖B − A‖ / ‖A − initial‖ (u2pl_replay's figures, B in the engine's place)."""
    from torch_u2pl_train import read_safetensors
    a, meta_a = read_safetensors(path_a)
    b, meta_b = read_safetensors(path_b)
    for path, meta in ((path_a, meta_a), (path_b, meta_b)):
        if meta.get("format") != "u2pl-official-trace":
            raise SystemExit(f"{path}: not a trace of official_trace.py (metadata format)")
    for key in ("config", "seed", "iterations"):
        if meta_a.get(key) != meta_b.get(key):
            raise SystemExit(f"{path_b}: {key} {meta_b.get(key)!r}, {path_a} has {meta_a.get(key)!r}")
    print(f"{path_b} against {path_a}: {meta_a['iterations']} iterations of the same run\n")
    print("| iteration | loss, A | loss, B | relative difference |\n| --- | --- | --- | --- |")
    for it in range(int(meta_a["iterations"])):
        la, lb = a[f"iter.{it}.loss"].item(), b[f"iter.{it}.loss"].item()
        print(f"| {it} | {la:.6f} | {lb:.6f} | {(lb - la) / la:.2e} |")
    keys = [k[len("init."):] for k in a if k.startswith("init.")]
    for n in sorted(set(meta_a["snapshots"].split()) & set(meta_b["snapshots"].split()), key=int):
        rel = []
        for buffers in (False, True):
            diff = moved = 0.0
            for k in keys:
                if k.endswith(("running_mean", "running_var")) != buffers:
                    continue
                wa, wb = a[f"after.{n}.{k}"].double(), b[f"after.{n}.{k}"].double()
                diff += float(((wb - wa) ** 2).sum())
                moved += float(((wa - a["init." + k].double()) ** 2).sum())
            rel.append((diff / moved) ** 0.5 if moved > 0 else diff ** 0.5)
        print(f"\nAfter {n} iterations: parameters ‖B − A‖ / ‖A − initial‖ = {rel[0]:.3e}, "
              f"BN running statistics {rel[1]:.3e}")


def main():
    if "--compare" in sys.argv[1:]:
        if len(sys.argv) != 4 or sys.argv[1] != "--compare":
            raise SystemExit("usage: official_trace.py --compare A.safetensors B.safetensors")
        return compare(sys.argv[2], sys.argv[3])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("official")
    ap.add_argument("config")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iters", type=int, default=0)
    ap.add_argument("--snapshots", default="")
    a = ap.parse_args()
    prepare(a.official, "train_semi.py")
    on_cpu()
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torch.utils.data.dataloader as dl
    import yaml
    import train_semi

    cfg = yaml.load(open(a.config), Loader=yaml.Loader)
    try:
        snaps = [int(x) for x in a.snapshots.split()]
    except ValueError:
        raise SystemExit(f"--snapshots {a.snapshots!r}: iteration counts separated by spaces")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    train_semi.setup_distributed = lambda *x, **k: (0, 1)
    os.environ["LOCAL_RANK"] = "0"
    tensors, meta = {}, {"format": "u2pl-official-trace", "config": os.path.abspath(a.config),
                         "seed": a.seed, "source": "the public U2PL train_semi.py"}
    rec = {"it": -1, "student": None, "labeled": None, "sites": {}, "iters": a.iters, "snaps": set()}

    def state(prefix, model):
        for k, v in model.state_dict().items():
            if not k.endswith("num_batches_tracked"):
                tensors[prefix + k] = v.detach().clone().float()

    # The loop: record the student's initial state and the labeled dataset at the first call.
    orig_train = train_semi.train

    def train(model, model_teacher, optimizer, lr_scheduler, sup_loss_fn, loader_l, *rest):
        epoch = rest[1]
        if epoch >= cfg["trainer"].get("sup_only_epoch", 1):
            raise SystemExit(f"{a.config}: iteration {rec['it'] + 1} is past the warm start "
                             f"(trainer.sup_only_epoch); record fewer --iters")
        if rec["student"] is None:
            rec["student"], rec["labeled"] = model.module, loader_l.dataset
            rec["len"] = len(loader_l)
            if rec["iters"] <= 0:
                rec["iters"] = len(loader_l)
            warm = cfg["trainer"].get("sup_only_epoch", 1) * len(loader_l)
            if rec["iters"] > warm:
                raise SystemExit(f"--iters {rec['iters']}: the warm start of {a.config} "
                                 f"(trainer.sup_only_epoch) has {warm} iterations")
            bad = [x for x in snaps if not 1 <= x <= rec["iters"]]
            if bad:
                raise SystemExit(f"--snapshots {bad}: each must lie in [1, {rec['iters']}]")
            rec["snaps"] = set(snaps or [1, rec["iters"]])
            state("init.", model.module)
            rec["sites"] = {m: n for n, m in model.module.named_modules() if isinstance(m, nn.Dropout2d)}
            meta["dropout_sites"] = ",".join(rec["sites"].values())
            meta["groups"] = len(optimizer.param_groups)
            wrap_step(optimizer)
        return orig_train(model, model_teacher, optimizer, lr_scheduler, wrap_loss(sup_loss_fn), loader_l, *rest)

    def wrap_loss(fn):
        def loss(pred, target):
            out = fn(pred, target)
            rec["it"] += 1
            tensors[f"iter.{rec['it']}.loss"] = torch.tensor([out.item()], dtype=torch.float64)
            return out
        return loss

    def wrap_step(optimizer):
        orig = optimizer.step

        def step(*x, **k):
            it = rec["it"]
            tensors[f"iter.{it}.lr"] = torch.tensor([g["lr"] for g in optimizer.param_groups], dtype=torch.float64)
            out = orig(*x, **k)
            if it + 1 in rec["snaps"]:
                state(f"after.{it + 1}.", rec["student"])
            if it + 1 == rec["iters"]:
                raise Done()
            return out
        optimizer.step = step

    train_semi.train = train

    # The labeled batches as the public loader hands them to the loop.
    def next_batch(self):
        out = self.__next__()
        if self._dataset is rec["labeled"]:
            image, label = out
            tensors[f"iter.{rec['it'] + 1}.image"] = image.float()
            tensors[f"iter.{rec['it'] + 1}.label"] = label.to(torch.int32)
        return out
    dl._BaseDataLoaderIter.next = next_batch

    # Dropout2d: the same Bernoulli draws as nn.Dropout2d (an (N, C, 1, 1) noise tensor), kept
    # for the student's sites; the teacher's train-mode forward draws as before.
    orig_dropout = nn.Dropout2d.forward

    def dropout(self, x):
        site = rec["sites"].get(self)
        if site is None or not self.training:
            return orig_dropout(self, x)
        scale = F.dropout2d(torch.ones(x.shape[0], x.shape[1], 1, 1), self.p, True)
        tensors[f"iter.{rec['it'] + 1}.dropout.{site}"] = scale.view(x.shape[0], x.shape[1]).clone()
        return x * scale
    nn.Dropout2d.forward = dropout

    sys.argv = ["train_semi.py", "--config", os.path.abspath(a.config), "--seed", str(a.seed)]
    cwd = os.getcwd()
    os.chdir(os.path.dirname(os.path.abspath(a.config)))
    try:
        train_semi.main()
        raise SystemExit("the public training ended before the recorded iterations")
    except Done:
        pass
    os.chdir(cwd)
    meta.update({"iterations": rec["iters"], "iters_per_epoch": rec["len"],
                 "snapshots": " ".join(str(s) for s in sorted(rec["snaps"]))})
    write_safetensors(a.out, tensors, meta)
    print(f"wrote {a.out}: {rec['iters']} iterations")


if __name__ == "__main__":
    main()
