"""Makes a checkout of the public U2PL code importable here, for the tools that read it
(official_eval.py, gen_official_fixtures.py): its folder on sys.path, collections.Iterable (the
code predates Python 3.10), and stand-ins for modules it imports at the top of its files that
these tools never call (tensorboardX, cv2, skimage), which Debian's Python lacks."""
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
    tbx.SummaryWriter = object
    sys.modules.setdefault("tensorboardX", tbx)
    sys.modules.setdefault("cv2", types.ModuleType("cv2"))  # only RandRotate uses it
    if "skimage" not in sys.modules:  # u2pl/utils/utils.py: label, regionprops
        measure = types.ModuleType("skimage.measure")
        measure.label = measure.regionprops = None
        skimage = types.ModuleType("skimage")
        skimage.measure = measure
        sys.modules["skimage"], sys.modules["skimage.measure"] = skimage, measure
    sys.path.insert(0, os.path.abspath(official))
