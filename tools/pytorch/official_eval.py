#!/usr/bin/python3
"""Scores engine weights with the public U2PL code's own validation (issue 16): the public
ModelBuilder, val loader (build_vocloader: its transforms, centre crop and label padding) and
train_semi.validate, read from a checkout of the public repository (never copied), on this CPU
(SyncBN as BatchNorm, a one-process gloo group). Beside `u2pl_eval --config RUN/config.yaml
--weights W` (or a training run's own validation) it tells whether the two evaluations agree on
the same weights.

Usage: official_eval.py OFFICIAL_DIR CONFIG.yaml WEIGHTS.safetensors [--which student|teacher]
  CONFIG   a public-style config (its dataset.val and net sections are used)
  WEIGHTS  engine weights, or an engine checkpoint (its eval_model unless --which says; --which
           applies to checkpoints only)
Prints the public per-class IoU and mIoU (percent); --json FILE writes {"miou": fraction}.
Needs /usr/bin/python3 with Debian's python3-torch, python3-torchvision, python3-yaml, python3-pil."""
import argparse
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from official_import import on_cpu, prepare  # noqa: E402
from torch_u2pl_train import read_safetensors  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("official")
    ap.add_argument("config")
    ap.add_argument("weights")
    ap.add_argument("--which", choices=["student", "teacher"])
    ap.add_argument("--json")
    a = ap.parse_args()
    prepare(a.official, "train_semi.py")
    on_cpu()
    import torch
    import yaml
    import train_semi
    from u2pl.dataset.pascal_voc import build_vocloader
    from u2pl.models.model_helper import ModelBuilder

    cfg = yaml.load(open(a.config), Loader=yaml.Loader)
    train_semi.cfg = cfg
    model = ModelBuilder(cfg["net"])
    tensors, meta = read_safetensors(a.weights)
    for name, t in tensors.items():
        if t.dtype != torch.float32:
            raise SystemExit(f"{a.weights}: tensor {name} is {t.dtype}, expected float32")
    prefixes = {k.split(".", 1)[0] for k in tensors}
    if prefixes & {"student", "teacher"}:  # an engine checkpoint
        which = a.which or meta.get("eval_model", "student")
        tensors = {k[len(which) + 1:]: v for k, v in tensors.items() if k.startswith(which + ".")}
        if not tensors:
            raise SystemExit(f"{a.weights}: the checkpoint holds no {which}")
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise SystemExit(f"{a.weights}: does not fit the config's network: missing {missing[:10]}, "
                         f"unexpected {unexpected[:10]}")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    logger = logging.getLogger("official_eval")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    miou = train_semi.validate(model, build_vocloader("val", cfg), 0, logger)
    print(f"public validation: mIoU {100 * miou:.4f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"miou": float(miou)}, f)


if __name__ == "__main__":
    main()
