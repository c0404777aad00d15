#!/usr/bin/python3
# Writes tests/fixtures/official_augment.safetensors (issue 16): the public U2PL code's own
# training transforms (u2pl/dataset/augmentation.py, imported from a checkout of the public
# repository, never copied), ToTensor → Normalize → RandResize → RandomHorizontalFlip → Crop
# ("rand", ignore_label 255, which the public Crop turns into 0), applied to small random samples
# with chosen draws. The public code's random.random / random.randint calls are answered from a
# list, so each case fixes the scale half, the scale value, the flip and the crop offsets;
# tests/test_augment.cpp renders the same samples with the same draws through u2pl::augment_with
# and must get the same images and labels. Run:
#   /usr/bin/python3 tools/pytorch/gen_official_fixtures.py OFFICIAL_DIR
# (needs python3-torch, python3-pil; OFFICIAL_DIR: see ../shared/peer/README.md)
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_fixtures import OUT, write_safetensors  # noqa: E402
from official_import import prepare  # noqa: E402

MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]
SCALE = [0.5, 2.0]
# (height, width, crop_h, crop_w, lower half?, scale u, flip?, row offset fraction, column fraction)
CASES = [
    (17, 23, 16, 19, True, 0.30, False, 0.0, 1.0),   # scale 0.65: 11x14, padded by 5 on both axes
    (17, 23, 15, 19, False, 0.45, True, 0.5, 0.25),  # scale 1.45: 24x33, cropped
    (23, 17, 15, 19, False, 0.0, False, 1.0, 0.0),   # scale 1: a plain pad / crop
    (12, 30, 16, 19, True, 0.999, True, 0.3, 0.7),   # just below 1: an odd pad in rows, a crop in columns
    (20, 20, 9, 13, False, 0.97, False, 0.6, 0.4),   # close to 2: large upscale
    (31, 9, 15, 19, True, 0.05, True, 0.0, 0.5),     # close to 0.5: 16x4, the columns padded by 15
]


class Draws:
    """Stands in for the `random` module inside the public augmentation code: answers its calls
    from a list and records what randint returned (the crop origin, row then column)."""

    def __init__(self, values):
        self.values = list(values)
        self.ints = []

    def random(self):
        return self.values.pop(0)

    def randint(self, a, b):
        frac = self.values.pop(0)
        self.ints.append(min(b, a + int(frac * (b - a + 1))))
        return self.ints[-1]


def main():
    if len(sys.argv) != 2:
        raise SystemExit("usage: gen_official_fixtures.py OFFICIAL_DIR (a checkout of the public U2PL code)")
    prepare(sys.argv[1], os.path.join("u2pl", "dataset", "augmentation.py"))
    import u2pl.dataset.augmentation as aug

    torch.manual_seed(0)
    tensors, meta = {}, {"source": "the public U2PL augmentation.py", "cases": len(CASES)}
    for k, (h, w, ch, cw, lower, u, flip, fy, fx) in enumerate(CASES):
        image = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8)
        label = torch.randint(0, 7, (h, w), dtype=torch.uint8)
        label[torch.rand(h, w) < 0.1] = 255
        compose = aug.Compose([aug.ToTensor(), aug.Normalize(mean=MEAN, std=STD), aug.RandResize(SCALE),
                               aug.RandomHorizontalFlip(), aug.Crop([ch, cw], crop_type="rand", ignore_label=255)])
        # The half draw (< 0.5: [lo, 1)), the value draw, the flip draw (< 0.5: flip), two offsets.
        draws = Draws([0.25 if lower else 0.75, u, 0.25 if flip else 0.75, fy, fx])
        aug.random = draws
        out_image, out_label = compose(image.numpy(), label.numpy())
        assert not draws.values and len(draws.ints) == 2, "the public transforms drew otherwise than expected"
        off_y, off_x = draws.ints
        scale = SCALE[0] + (1.0 - SCALE[0]) * u if lower else 1.0 + (SCALE[1] - 1.0) * u  # RandResize's
        p = f"case.{k}."
        tensors[p + "image"] = image
        tensors[p + "label"] = label
        tensors[p + "out_image"] = out_image[0].float()
        tensors[p + "out_label"] = out_label[0, 0].to(torch.int32)
        meta.update({p + "crop_h": ch, p + "crop_w": cw, p + "scale": repr(scale), p + "flip": int(flip),
                     p + "off_y": off_y, p + "off_x": off_x})
    write_safetensors(os.path.join(OUT, "official_augment.safetensors"), tensors, meta)
    print("wrote", os.path.join(OUT, "official_augment.safetensors"))


if __name__ == "__main__":
    main()
