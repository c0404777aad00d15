#!/usr/bin/python3
# The U2PL network (SPEC §1: deep- or standard-stem ResNet, DeepLabv3+ decoder, aux head) in
# PyTorch, written from SPEC with the public code's state-dict keys, plus our width divisor and
# Dropout2d sites whose channel scales are inputs. The oracle of tools/pytorch/gen_model_fixture.py;
# `/usr/bin/python3 tools/pytorch/torch_u2pl_net.py --self-check` prints and checks SPEC's shapes.
import argparse
import re
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

BLOCKS = {18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]),
          50: ("bottleneck", [3, 4, 6, 3]), 101: ("bottleneck", [3, 4, 23, 3]),
          152: ("bottleneck", [3, 8, 36, 3])}
DROPOUT_P = 0.1
MULTI_GRID = [2, 2, 4]  # public _make_layer's layer4 grids (ResNet-18 has 2 blocks: uses [2, 2])


def conv3x3(cin, cout, stride=1, dilation=1, bias=False):
    return nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=bias)


def conv1x1(cin, cout, stride=1, bias=False):
    return nn.Conv2d(cin, cout, 1, stride, bias=bias)


class ScaledDropout2d(nn.Module):
    """Dropout2d whose (N, C) channel scale (0 or 1/0.9) is given, not drawn: U2PLNet.forward
    sets `scale` for the call. Identity in eval mode."""

    def __init__(self, channels):
        super().__init__()
        self.channels, self.site, self.scale = channels, None, None

    def forward(self, x):  # x (N, C, H, W)
        if not self.training:
            return x
        if self.scale is None or tuple(self.scale.shape) != tuple(x.shape[:2]):
            raise RuntimeError("dropout site %s needs a scale of shape %s" %
                               (self.site, tuple(x.shape[:2])))
        return x * self.scale[:, :, None, None]


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: 1x1 → 3x3 (stride, dilation) → 1x1 (x4), shortcut, add, ReLU."""
    expansion = 4

    def __init__(self, cin, planes, stride, dilation, downsample):
        super().__init__()
        cout = planes * self.expansion
        self.conv1, self.bn1 = conv1x1(cin, planes), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes, stride, dilation), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = conv1x1(planes, cout), nn.BatchNorm2d(cout)
        self.downsample = downsample

    def last_bn(self):  # zero_init_residual's target
        return self.bn3

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class BasicBlock(nn.Module):
    """Two 3x3 convs (the first strided), both with the block's dilation (our extension: the
    public BasicBlock refuses dilation > 1), shortcut, add, ReLU."""
    expansion = 1

    def __init__(self, cin, planes, stride, dilation, downsample):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(cin, planes, stride, dilation), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes, 1, dilation), nn.BatchNorm2d(planes)
        self.downsample = downsample

    def last_bn(self):  # zero_init_residual's target
        return self.bn2

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    """`encoder.*`. forward returns every stage: stem, pool, layer1..layer4."""

    def __init__(self, depth, stem, width_divisor, output_stride, multi_grid):
        super().__init__()
        kind, counts = BLOCKS[depth]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        w = 64 // width_divisor
        if stem == "deep":
            self.conv1 = nn.Sequential(
                conv3x3(3, w, stride=2), nn.BatchNorm2d(w), nn.ReLU(),
                conv3x3(w, w), nn.BatchNorm2d(w), nn.ReLU(),
                conv3x3(w, 2 * w))
            self.cin = 2 * w
        elif stem == "standard":
            self.conv1 = nn.Conv2d(3, w, 7, 2, padding=3, bias=False)
            self.cin = w
        else:
            raise ValueError("stem must be deep or standard, not %r" % stem)
        self.bn1 = nn.BatchNorm2d(self.cin)
        self.maxpool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
        dilate = {8: [False, True, True], 16: [False, False, True]}[output_stride]
        self.dilation = 1
        self.layer1 = self._make_layer(block, w, counts[0], 1, False, False)
        self.layer2 = self._make_layer(block, 2 * w, counts[1], 2, dilate[0], False)
        self.layer3 = self._make_layer(block, 4 * w, counts[2], 2, dilate[1], False)
        self.layer4 = self._make_layer(block, 8 * w, counts[3], 2, dilate[2], multi_grid)
        self.out_channels = [k * w * block.expansion for k in (1, 2, 4, 8)]  # layer1..4

    def _make_layer(self, block, planes, blocks, stride, dilate, multi_grid):
        """The public _make_layer: a dilated layer keeps stride 1 and multiplies the running
        dilation by the stride; block 0 uses the previous dilation (x grid), the rest the new."""
        previous = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        cout = planes * block.expansion
        downsample = None
        if stride != 1 or self.cin != cout:
            downsample = nn.Sequential(conv1x1(self.cin, cout, stride), nn.BatchNorm2d(cout))
        grids = MULTI_GRID if multi_grid else [1] * blocks
        layers = [block(self.cin, planes, stride, previous * grids[0], downsample)]
        self.cin = cout
        layers += [block(cout, planes, 1, self.dilation * grids[i], None)
                   for i in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):  # x (N, 3, H, W)
        out = {"stem": F.relu(self.bn1(self.conv1(x)))}
        out["pool"] = self.maxpool(out["stem"])
        y = out["pool"]
        for k in range(1, 5):
            y = out["layer%d" % k] = getattr(self, "layer%d" % k)(y)
        return out


def conv_bn_relu(conv, c):
    return [conv, nn.BatchNorm2d(c), nn.ReLU()]


class ASPP(nn.Module):
    """`decoder.aspp`: pooled 1x1 (bilinear back to h×w), 1x1, three dilated 3x3; no bias;
    concatenated conv1..conv5 → 5·inner channels."""

    def __init__(self, cin, inner, dilations):
        super().__init__()
        self.conv1 = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                   *conv_bn_relu(conv1x1(cin, inner), inner))
        self.conv2 = nn.Sequential(*conv_bn_relu(conv1x1(cin, inner), inner))
        for i, d in enumerate(dilations):
            setattr(self, "conv%d" % (i + 3),
                    nn.Sequential(*conv_bn_relu(conv3x3(cin, inner, 1, d), inner)))
        self.out_channels = 5 * inner

    def forward(self, x):  # x (N, cin, h, w) → (N, 5·inner, h, w)
        h, w = x.shape[-2:]
        pooled = F.interpolate(self.conv1(x), size=(h, w), mode="bilinear", align_corners=True)
        return torch.cat([pooled] + [getattr(self, "conv%d" % k)(x) for k in range(2, 6)], 1)


def two_conv_head(cin, hidden, cout):
    """classifier / representation: keys .0 .1 .4 .5 .8, dropout sites .3 and .7."""
    return nn.Sequential(*conv_bn_relu(conv3x3(cin, hidden, bias=True), hidden),
                         ScaledDropout2d(hidden),
                         *conv_bn_relu(conv3x3(hidden, hidden, bias=True), hidden),
                         ScaledDropout2d(hidden), conv1x1(hidden, cout, bias=True))


class Decoder(nn.Module):
    """`decoder.*` (public dec_deeplabv3_plus): ASPP on layer4 → head; low_conv on layer1;
    concat [low_conv, head upsampled to layer1's size] → classifier (pred), representation."""

    def __init__(self, c_low, c_high, num_classes, inner, dilations, width, rep_head):
        super().__init__()
        self.aspp = ASPP(c_high, inner, dilations)
        self.head = nn.Sequential(*conv_bn_relu(conv3x3(self.aspp.out_channels, width), width),
                                  ScaledDropout2d(width))
        self.low_conv = nn.Sequential(*conv_bn_relu(conv1x1(c_low, width, bias=True), width))
        self.classifier = two_conv_head(2 * width, width, num_classes)
        if rep_head:
            self.representation = two_conv_head(2 * width, width, width)
        self.rep_head = rep_head

    def forward(self, low, high):  # low: layer1 (N, c_low, H/4, W/4); high: layer4
        low = self.low_conv(low)
        head = self.head(self.aspp(high))
        head = F.interpolate(head, size=low.shape[-2:], mode="bilinear", align_corners=True)
        cat = torch.cat([low, head], 1)
        out = {"pred": self.classifier(cat)}
        if self.rep_head:
            out["rep"] = self.representation(cat)
        return out


class Aux(nn.Module):
    """`auxor.aux.{0,1,4}` on layer3: 3x3 (bias) → BN → ReLU → dropout (site .3) → 1x1."""

    def __init__(self, cin, width, num_classes):
        super().__init__()
        self.aux = nn.Sequential(*conv_bn_relu(conv3x3(cin, width, bias=True), width),
                                 ScaledDropout2d(width), conv1x1(width, num_classes, bias=True))

    def forward(self, x):
        return self.aux(x)


class U2PLNet(nn.Module):
    """encoder + decoder (+ auxor). forward(x, dropout) returns {pred, rep?, aux?} at the
    decoder's stride 4 (aux at layer3's stride); `dropout` maps each site to its (N, C) scale
    and is required in train mode."""

    def __init__(self, depth=101, stem="deep", width_divisor=1, output_stride=8, multi_grid=True,
                 num_classes=21, inner_planes=256, dilations=None, rep_head=True, aux=False,
                 zero_init_residual=True):
        super().__init__()
        if 64 % width_divisor:
            raise ValueError("width_divisor must divide 64, got %d" % width_divisor)
        if dilations is None:
            dilations = {8: (12, 24, 36), 16: (6, 12, 18)}[output_stride]
        width = 256 // width_divisor
        self.encoder = ResNet(depth, stem, width_divisor, output_stride, multi_grid)
        c1, _, c3, c4 = self.encoder.out_channels
        self.decoder = Decoder(c1, c4, num_classes, inner_planes, dilations, width, rep_head)
        if aux:
            self.auxor = Aux(c3, width, num_classes)
        self.aux = aux
        self.sites = {}
        for name, m in self.named_modules():
            if isinstance(m, ScaledDropout2d):
                m.site = name
                self.sites[name] = m
        self._init(zero_init_residual)

    def _init(self, zero_init_residual):
        """SPEC §1.1, the encoder only (as the public ResNet): conv kaiming_normal(fan_out,
        relu), BN weight 1 bias 0, then the last BN of each residual block zeroed. The decoder
        and aux head keep PyTorch's default init, as in the public code."""
        for m in self.encoder.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.encoder.modules():
                if isinstance(m, (Bottleneck, BasicBlock)):
                    nn.init.zeros_(m.last_bn().weight)

    def site_channels(self):
        """{site: C}: the channel count each dropout site sees."""
        return {name: m.channels for name, m in self.sites.items()}

    def forward(self, x, dropout=None):  # x (N, 3, H, W)
        if self.training:
            if dropout is None or set(dropout) != set(self.sites):
                raise RuntimeError("train mode needs dropout scales for exactly %s"
                                   % sorted(self.sites))
            for name, m in self.sites.items():
                m.scale = dropout[name]
        try:
            f = self.encoder(x)
            out = self.decoder(f["layer1"], f["layer4"])
            if self.aux:
                out["aux"] = self.auxor(f["layer3"])
        finally:
            for m in self.sites.values():
                m.scale = None
        return out


def draw_dropout(model, n, device=None):
    """Dropout2d's own draw, made explicit: per site an (n, C) scale, 0 with probability p,
    else 1/(1 - p) (float32, as torch's bernoulli_(1 - p).div_(1 - p)), on `device`."""
    scales = {}
    for name, c in model.site_channels().items():
        keep = torch.empty(n, c, device=device).bernoulli_(1 - DROPOUT_P)
        scales[name] = keep.div_(1 - DROPOUT_P)
    return scales


_BN = r"\.(weight|bias|running_mean|running_var|num_batches_tracked)"
# The public state-dict keys (SPEC §1) and nothing else; matched with fullmatch.
PUBLIC_KEY = re.compile("(?:%s)" % "|".join([
    r"encoder\.conv1\.([036]\.weight|[14]%s)" % _BN, r"encoder\.conv1\.weight",
    r"encoder\.bn1" + _BN,
    r"encoder\.layer[1-4]\.\d+\.(conv[123]\.weight|bn[123]%s|downsample\.0\.weight|"
    r"downsample\.1%s)" % (_BN, _BN),
    r"decoder\.aspp\.conv1\.(1\.weight|2%s)" % _BN,
    r"decoder\.aspp\.conv[2-5]\.(0\.weight|1%s)" % _BN,
    r"decoder\.head\.(0\.weight|1%s)" % _BN,
    r"decoder\.low_conv\.(0\.(weight|bias)|1%s)" % _BN,
    r"decoder\.(classifier|representation)\.([048]\.(weight|bias)|[15]%s)" % _BN,
    r"auxor\.aux\.([04]\.(weight|bias)|1%s)" % _BN]))


def layer_dilations(encoder):
    """{layerK: [dilation of each block's 3x3 conv]}."""
    out = {}
    for k in range(1, 5):
        blocks = getattr(encoder, "layer%d" % k)
        out["layer%d" % k] = [(b.conv2 if isinstance(b, Bottleneck) else b.conv1).dilation[0]
                              for b in blocks]
    return out


def stage_shapes(model, x):
    """{stage: shape} for the encoder stages and the outputs, in eval mode without grad."""
    model.eval()
    with torch.no_grad():
        f = model.encoder(x)
        shapes = {k: tuple(v.shape) for k, v in f.items()}
        shapes.update({k: tuple(v.shape) for k, v in model(x).items()})
    return shapes


def expect(what, got, want):
    print("  %-44s %s" % (what, got))
    if got != want:
        raise SystemExit("self-check failed: %s is %s, SPEC says %s" % (what, got, want))


def self_check():
    """SPEC §1.1's promises: 513 → 257 → 129 → 65 (OS8, full width), 500×375 → 126×95
    after the pool, the public multi-grid dilations, the public keys, dropout as an input."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print("ResNet-101 deep stem, full width, OS8, 1x3x513x513 (encoder, no grad):")
    enc = U2PLNet(depth=101).encoder.eval()
    t = time.time()
    with torch.no_grad():
        f = enc(torch.randn(1, 3, 513, 513))
    for stage, c, s in [("stem", 128, 257), ("pool", 128, 129), ("layer1", 256, 129),
                        ("layer2", 512, 65), ("layer3", 1024, 65), ("layer4", 2048, 65)]:
        expect(stage, tuple(f[stage].shape), (1, c, s, s))
    print("  (%.1f s)" % (time.time() - t))
    del enc, f

    print("ResNet-50 deep stem, width/32, OS8, 2x3x500x375, whole net:")
    small = U2PLNet(depth=50, width_divisor=32, inner_planes=8, num_classes=5, aux=True)
    s = stage_shapes(small, torch.randn(2, 3, 500, 375))
    expect("stem", s["stem"], (2, 4, 250, 188))
    expect("pool (ceil_mode)", s["pool"], (2, 4, 126, 95))
    expect("layer4", s["layer4"], (2, 64, 63, 48))
    expect("pred", s["pred"], (2, 5, 126, 95))
    expect("rep", s["rep"], (2, 8, 126, 95))
    expect("aux", s["aux"], (2, 5, 63, 48))
    d = layer_dilations(small.encoder)
    expect("OS8 layer3 dilations", d["layer3"], [1] + [2] * 5)
    expect("OS8 layer4 dilations", d["layer4"], [4, 8, 16])
    expect("OS8 ASPP dilations", [small.decoder.aspp.conv3[0].dilation[0],
                                  small.decoder.aspp.conv4[0].dilation[0],
                                  small.decoder.aspp.conv5[0].dilation[0]], [12, 24, 36])
    keys = small.state_dict().keys()
    for k in ["encoder.conv1.6.weight", "encoder.bn1.running_var",
              "encoder.layer1.0.downsample.1.weight", "encoder.layer4.2.conv3.weight",
              "decoder.aspp.conv1.1.weight", "decoder.aspp.conv5.1.bias",
              "decoder.head.1.weight", "decoder.low_conv.0.bias", "decoder.classifier.8.bias",
              "decoder.representation.5.weight", "auxor.aux.4.bias"]:
        expect("key " + k, k in keys, True)
    expect("keys not public", [k for k in keys if not PUBLIC_KEY.fullmatch(k)], [])
    expect("dropout sites", sorted(small.sites),
           sorted(["decoder.head.3", "decoder.classifier.3", "decoder.classifier.7",
                   "decoder.representation.3", "decoder.representation.7", "auxor.aux.3"]))
    small.train()
    x = torch.randn(2, 3, 33, 33)
    try:
        small(x)
        raise SystemExit("self-check failed: train mode ran without dropout scales")
    except RuntimeError as e:
        print("  train mode without scales refused:", str(e)[:60], "...")
    ones = {k: torch.ones(2, c) for k, c in small.site_channels().items()}
    zero_head = dict(ones, **{"decoder.head.3": torch.zeros(2, 8)})
    a, b = small(x, ones)["pred"], small(x, zero_head)["pred"]
    expect("dropout scale changes pred", bool((a - b).abs().max() > 0), True)

    print("ResNet-50, width/32, OS16, 1x3x513x513:")
    s16 = U2PLNet(depth=50, width_divisor=32, output_stride=16, inner_planes=8)
    s = stage_shapes(s16, torch.randn(1, 3, 513, 513))
    expect("layer2", s["layer2"], (1, 16, 65, 65))
    expect("layer3", s["layer3"], (1, 32, 33, 33))
    expect("layer4", s["layer4"], (1, 64, 33, 33))
    expect("pred", s["pred"], (1, 21, 129, 129))
    d = layer_dilations(s16.encoder)
    expect("OS16 layer3 dilations", d["layer3"], [1] * 6)
    expect("OS16 layer4 dilations", d["layer4"], [2, 4, 8])
    expect("OS16 ASPP dilations", s16.decoder.aspp.conv5[0].dilation[0], 18)

    print("ResNet-18 standard stem, width/16, OS8, 1x3x513x513:")
    r18 = U2PLNet(depth=18, stem="standard", width_divisor=16, inner_planes=8, rep_head=False)
    s = stage_shapes(r18, torch.randn(1, 3, 513, 513))
    expect("stem", s["stem"], (1, 4, 257, 257))
    expect("pool", s["pool"], (1, 4, 129, 129))
    expect("layer4", s["layer4"], (1, 32, 65, 65))
    expect("no rep", "rep" in s, False)
    expect("BasicBlock layer4 dilations", layer_dilations(r18.encoder)["layer4"], [4, 8])
    expect("key encoder.conv1.weight", tuple(r18.state_dict()["encoder.conv1.weight"].shape),
           (4, 3, 7, 7))
    expect("keys not public", [k for k in r18.state_dict() if not PUBLIC_KEY.fullmatch(k)], [])
    print("self-check passed")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="The U2PL network of SPEC §1 in PyTorch.")
    ap.add_argument("--self-check", action="store_true",
                    help="print the stage shapes SPEC §1.1 promises and check them")
    if ap.parse_args().self_check:
        self_check()
    else:
        ap.print_help()
