#!/usr/bin/python3
# Converts PyTorch weights to and from the engine's safetensors files (format and key tables in
# weights/README.md): torchvision ImageNet ResNets, the public U2PL ImageNet backbone and the
# public U2PL checkpoints. Needs only Debian's python3-torch; layouts it does not know are refused
# with exit code 2 and no output file. Covered by tests/test_weights.cpp.
import argparse
import json
import os
import re
import struct
import sys

import torch

# The Bottleneck block counts of ResNet-50/101/152 by their layer3 count (SPEC §1.1).
BLOCKS = {6: (3, 4, 6, 3), 23: (3, 4, 23, 3), 36: (3, 8, 36, 3)}
DEPTH = {6: 50, 23: 101, 36: 152}
BN = ("weight", "bias", "running_mean", "running_var")
LIST_CAP = 20  # names printed per category of problem


class Refused(Exception):
    """A layout or input the converter does not know; reported with exit code 2."""


def bn(p):
    return ["%s.%s" % (p, k) for k in BN]


def conv(p, bias=False):
    return [p + ".weight"] + ([p + ".bias"] if bias else [])


def resnet_keys(stem, blocks):
    """Every state-dict key of a Bottleneck ResNet (torchvision / public U2PL names, no fc)."""
    if stem == "standard":
        keys = conv("conv1") + bn("bn1")
    else:
        keys = conv("conv1.0") + bn("conv1.1") + conv("conv1.3") + bn("conv1.4") + conv("conv1.6") + bn("bn1")
    for k, n in enumerate(blocks, 1):
        for i in range(n):
            p = "layer%d.%d" % (k, i)
            for j in (1, 2, 3):
                keys += conv("%s.conv%d" % (p, j)) + bn("%s.bn%d" % (p, j))
            if i == 0:  # channels change in block 0 of every layer
                keys += conv(p + ".downsample.0") + bn(p + ".downsample.1")
    return keys


def decoder_keys(rep_head, aux):
    """The public dec_deeplabv3_plus (and Aux_Module) keys, prefixed decoder. / auxor."""
    d = conv("low_conv.0", True) + bn("low_conv.1") + conv("aspp.conv1.1") + bn("aspp.conv1.2")
    for b in (2, 3, 4, 5):
        d += conv("aspp.conv%d.0" % b) + bn("aspp.conv%d.1" % b)
    d += conv("head.0") + bn("head.1")
    heads = ["classifier"] + (["representation"] if rep_head else [])
    for h in heads:
        d += conv(h + ".0", True) + bn(h + ".1") + conv(h + ".4", True) + bn(h + ".5") + conv(h + ".8", True)
    keys = ["decoder." + k for k in d]
    if aux:
        keys += ["auxor." + k for k in conv("aux.0", True) + bn("aux.1") + conv("aux.4", True)]
    return keys


def listing(title, names):
    names = sorted(names)
    more = "\n    ... and %d more" % (len(names) - LIST_CAP) if len(names) > LIST_CAP else ""
    return "\n  %s (%d):\n    %s%s" % (title, len(names), "\n    ".join(names[:LIST_CAP]), more)


def compare(keys, expected, what, hint=""):
    unknown, missing = set(keys) - set(expected), set(expected) - set(keys)
    if unknown or missing:
        msg = "%s: not a layout this converter knows" % what
        if unknown:
            msg += listing("unknown keys", unknown)
        if missing:
            msg += listing("missing expected keys", missing)
        raise Refused(msg + ("\n  " + hint if hint else ""))


def check_resnet(keys, stem, what):
    """keys: backbone keys without prefix. Returns the depth (50, 101 or 152)."""
    n3 = len({m.group(1) for m in (re.match(r"layer3\.(\d+)\.", k) for k in keys) if m})
    if n3 not in BLOCKS:
        raise Refused("%s: layer3 has %d blocks; ResNet-50/101/152 have 6/23/36" % (what, n3))
    hint = ""
    if stem == "standard" and "conv1.0.weight" in keys:
        hint = "conv1.0.weight is a deep stem: use --from u2pl-backbone"
    elif stem == "deep" and "conv1.weight" in keys:
        hint = "conv1.weight is a standard 7x7 stem: use --from torchvision"
    compare(keys, resnet_keys(stem, BLOCKS[n3]), what, hint)
    return DEPTH[n3]


def is_state_dict(obj):
    return isinstance(obj, dict) and len(obj) > 0 and all(torch.is_tensor(v) for v in obj.values())


def describe(obj):
    if isinstance(obj, dict):
        return "a dict with keys %s" % sorted(str(k) for k in obj)[:LIST_CAP]
    if isinstance(obj, torch.nn.Module):
        return "a pickled %s module (save its state_dict() instead)" % type(obj).__name__
    return "a %s" % type(obj).__name__


def load_pth(path):
    try:
        return torch.load(path, map_location="cpu")
    except Exception as e:  # any unpickling failure means the file is not a checkpoint we read
        raise Refused("%s: torch.load failed: %s" % (path, e))


def state_dict_of(obj, path):
    """A plain state dict, or one wrapped as {'state_dict': ...}; anything else is refused."""
    if isinstance(obj, dict) and "state_dict" in obj and is_state_dict(obj["state_dict"]):
        print("unwrapped 'state_dict'")
        obj = obj["state_dict"]
    if not is_state_dict(obj):
        hint = "; use --from u2pl-checkpoint" if isinstance(obj, dict) and "model_state" in obj else ""
        raise Refused("%s: expected a state dict (or {'state_dict': ...}), got %s%s"
                      % (path, describe(obj), hint))
    return obj


def split_dropped(sd, drop):
    """Drops PyTorch's BN step counters and keys matching `drop`; returns (kept, dropped names)."""
    kept, dropped = {}, []
    for k, v in sd.items():
        if k.endswith("num_batches_tracked") or (drop and re.match(drop, k)):
            dropped.append(k)
        else:
            kept[k] = v
    return kept, dropped


def to_f32(sd, what):
    out = {}
    for k, v in sd.items():
        if not v.is_floating_point():
            raise Refused("%s: tensor %s is %s, expected a floating-point tensor" % (what, k, v.dtype))
        out[k] = v.detach().to(torch.float32).contiguous()
    return out


def report(sd, dropped):
    counts = {}
    for k in sd:
        counts[k.split(".")[0]] = counts.get(k.split(".")[0], 0) + 1
    for p in sorted(counts):
        print("mapped %s.*: %d tensors" % (p, counts[p]))
    nbt = sum(k.endswith("num_batches_tracked") for k in dropped)
    other = sorted(k for k in dropped if not k.endswith("num_batches_tracked"))
    print("dropped: %d num_batches_tracked%s" % (nbt, "".join(", " + k for k in other)))


def write_safetensors(path, tensors, meta):
    """u64 LE header length, JSON header padded with spaces to a multiple of 8, then the raw
    little-endian F32 data in header order; written to a temporary file, then renamed."""
    header, off = {}, 0
    names = sorted(tensors)
    for name in names:
        n = tensors[name].numel() * 4
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [off, off + n]}
        off += n
    header["__metadata__"] = {k: str(v) for k, v in sorted(meta.items())}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for name in names:
                f.write(tensors[name].numpy().astype("<f4", copy=False).tobytes())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise Refused("%s: not a safetensors file (%d bytes)" % (path, len(data)))
    (hlen,) = struct.unpack("<Q", data[:8])
    if hlen > len(data) - 8:
        raise Refused("%s: header length %d exceeds the file: truncated?" % (path, hlen))
    try:
        header = json.loads(data[8:8 + hlen])
    except ValueError as e:
        raise Refused("%s: malformed JSON header: %s" % (path, e))
    base, out = 8 + hlen, {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        try:
            b, end = e["data_offsets"]
            shape = [int(d) for d in e["shape"]]
            complete = e["dtype"] == "F32" and 0 <= b <= end and base + end <= len(data) \
                and end - b == 4 * torch.Size(shape).numel()
        except (KeyError, TypeError, ValueError):
            complete = False
        if not complete:
            raise Refused("%s: tensor %s is not a complete F32 tensor" % (path, name))
        blob = bytearray(data[base + b:base + end])
        out[name] = torch.frombuffer(blob, dtype=torch.float32).reshape(shape) if blob else torch.zeros(shape)
    return out


def check_model(keys, what):
    """Engine / public U2PL model keys (encoder.*, decoder.*, optional auxor.*). Returns (stem, depth)."""
    enc = [k[len("encoder."):] for k in keys if k.startswith("encoder.")]
    stem = "deep" if "conv1.0.weight" in enc else "standard"
    depth = check_resnet(enc, stem, what)
    rest = [k for k in keys if not k.startswith("encoder.")]
    rep = any(k.startswith("decoder.representation.") for k in rest)
    aux = any(k.startswith("auxor.") for k in rest)
    compare(rest, decoder_keys(rep, aux), what)
    return stem, depth


def from_backbone(args, stem, source_kind):
    sd, dropped = split_dropped(state_dict_of(load_pth(args.input), args.input), r"fc\.")
    depth = check_resnet(list(sd), stem, args.input)
    out = {"encoder." + k: v for k, v in to_f32(sd, args.input).items()}
    name = os.path.basename(args.input)
    meta = {"source": "%s:%s" % (source_kind, name), "stem": stem, "depth": depth}
    return out, dropped, meta


def from_checkpoint(args):
    obj = load_pth(args.input)
    field = {"teacher": "teacher_state", "student": "model_state"}[args.which]
    if not isinstance(obj, dict) or field not in obj:
        raise Refused("%s: expected a U2PL checkpoint with '%s' (--which %s), got %s"
                      % (args.input, field, args.which, describe(obj)))
    sd = obj[field]
    if not is_state_dict(sd):
        raise Refused("%s: '%s' is not a state dict: %s" % (args.input, field, describe(sd)))
    prefixed = [k.startswith("module.") for k in sd]
    if any(prefixed) and not all(prefixed):
        raise Refused("%s: some keys of '%s' have the module. prefix and some do not" % (args.input, field))
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    if all(prefixed):
        print("stripped module. from %d keys" % len(sd))
    sd, dropped = split_dropped(sd, None)
    stem, depth = check_model(list(sd), args.input)
    meta = {"source": "u2pl-checkpoint:%s:%s" % (os.path.basename(args.input), args.which),
            "stem": stem, "depth": depth, "num_classes": sd["decoder.classifier.8.weight"].shape[0]}
    return to_f32(sd, args.input), dropped, meta


def to_checkpoint(args):
    sd = read_safetensors(args.input)
    check_model(list(sd), args.input)
    state = {}
    for k in sorted(sd):
        state["module." + k] = sd[k].clone()
        if k.endswith(".running_var"):  # PyTorch BN also stores its step counter
            state["module." + k[:-len("running_var")] + "num_batches_tracked"] = torch.tensor(0)
    tmp = args.output + ".tmp"
    try:
        torch.save({"model_state": state}, tmp)
        os.replace(tmp, args.output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print("wrote model_state: %d tensors with the module. prefix (%d num_batches_tracked added)"
          % (len(state), len(state) - len(sd)))


def main():
    ap = argparse.ArgumentParser(description="Converts PyTorch ResNet / U2PL weights to and from the "
                                 "engine's safetensors files; weights/README.md describes every mode.")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--from", dest="src", choices=["torchvision", "u2pl-backbone", "u2pl-checkpoint"])
    mode.add_argument("--to", dest="dst", choices=["u2pl-checkpoint"])
    ap.add_argument("--which", choices=["teacher", "student"], default=None,
                    help="with --from u2pl-checkpoint: teacher_state (default) or model_state")
    ap.add_argument("input")
    ap.add_argument("output")
    args = ap.parse_args()
    if args.which and args.src != "u2pl-checkpoint":
        ap.error("--which applies to --from u2pl-checkpoint only")
    args.which = args.which or "teacher"
    try:
        if args.dst:
            to_checkpoint(args)
            return 0
        if args.src == "torchvision":
            sd, dropped, meta = from_backbone(args, "standard", "torchvision")
        elif args.src == "u2pl-backbone":
            sd, dropped, meta = from_backbone(args, "deep", "u2pl-backbone")
        else:
            sd, dropped, meta = from_checkpoint(args)
        report(sd, dropped)
        write_safetensors(args.output, sd, meta)
        summary = ", ".join("%s=%s" % kv for kv in sorted(meta.items()))
        print("wrote %s: %d tensors, %s" % (args.output, len(sd), summary))
        return 0
    except Refused as e:
        print("convert.py: refused: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
