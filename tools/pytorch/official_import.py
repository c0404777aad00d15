"""Makes a checkout of the public U2PL code importable here, for the tools that read it
(official_eval.py, official_trace.py, gen_official_fixtures.py): its folder on sys.path,
collections.Iterable (the code predates Python 3.10), and stand-ins for modules it imports at the
top of its files that these tools never call (tensorboardX, cv2, skimage), which Debian's Python
lacks; on_cpu() then runs its models and training functions in this one CPU process."""
import collections
import collections.abc
import os
import sys
import types


def prepare(official, needs):
    """Refuses a folder without the file `needs` (relative to it); then sets up the imports."""
    if not os.path.isfile(os.path.join(official, needs)):
        raise SystemExit(f"{official}: no {needs} (a checkout of the public U2PL code)")
    collections.Iterable = collections.abc.Iterable
    tbx = types.ModuleType("tensorboardX")

    class SummaryWriter:  # train_semi.main opens one; nothing is written
        def __init__(self, *a, **k): pass
        def add_scalar(self, *a, **k): pass
        def close(self): pass

    tbx.SummaryWriter = SummaryWriter
    sys.modules.setdefault("tensorboardX", tbx)
    sys.modules.setdefault("cv2", types.ModuleType("cv2"))  # only RandRotate uses it
    if "skimage" not in sys.modules:  # u2pl/utils/utils.py: label, regionprops
        measure = types.ModuleType("skimage.measure")
        measure.label = measure.regionprops = None
        skimage = types.ModuleType("skimage")
        skimage.measure = measure
        sys.modules["skimage"], sys.modules["skimage.measure"] = skimage, measure
    sys.path.insert(0, os.path.abspath(official))


def on_cpu():
    """Runs the public model code in this one CPU process: .cuda() does nothing, SyncBN is
    BatchNorm, DistributedDataParallel passes through, ResNets start without ImageNet weights
    (nothing is downloaded here) and the process group is a one-rank gloo group. Call after
    prepare()."""
    import torch
    import torch.distributed as dist
    import torch.nn as nn
    import u2pl.models.base as base
    import u2pl.models.decoder as dec
    import u2pl.models.resnet as rn

    torch.Tensor.cuda = lambda self, *a, **k: self
    nn.Module.cuda = lambda self, *a, **k: self
    torch.cuda.set_device = lambda *a, **k: None
    nn.SyncBatchNorm.convert_sync_batchnorm = staticmethod(lambda module, *a, **k: module)

    class PassThrough(nn.Module):
        def __init__(self, module, **kwargs):
            super().__init__()
            self.module = module

        def forward(self, *a, **k):
            return self.module(*a, **k)

    nn.parallel.DistributedDataParallel = PassThrough
    base.get_syncbn = dec.get_syncbn = rn.get_syncbn = lambda: nn.BatchNorm2d
    for fn in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"):
        orig = getattr(rn, fn)
        setattr(rn, fn, (lambda orig: lambda pretrained=True, **kw: orig(pretrained=False, **kw))(orig))
    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(29000 + os.getpid() % 1000))
        dist.init_process_group("gloo", world_size=1, rank=0)
