"""Write ``pixels_regseg.json``: what RegSeg's validation transforms feed the network.

Run by hand with torch and Pillow (the mmseg reference environment has both), from the
repository root:

    /work/scratch/envs/mmseg/bin/python tests/manifests/pixels_regseg.py \\
        --regseg /work/scratch/src/RegSeg

RegSeg (RolandGao/RegSeg) builds its validation transforms with ``data.build_val_transform(
val_input_size, val_label_size)``: ``ValResize`` (torchvision ``F.resize(image, size)`` on the
PIL image opened with ``Image.open(path).convert('RGB')``), ``ToTensor``, ``Normalize(ImageNet
mean/std)``; ``val_input_size`` is 1024 for Cityscapes (``configs/cityscapes_1000epochs.yaml``)
and 720 for CamVid (``configs/camvid_200epochs.yaml``), read from RegSeg's own files here.
torchvision cannot be installed in these environments (PLATFORM.md), so its steps are spelled
out from its source (``torchvision/transforms/functional_pil.py`` ``resize`` with an int size,
``functional.py`` ``to_tensor``/``normalize``; pytorch/vision 0.10-0.11, the version RegSeg's
requirements pin): the short side becomes ``size`` and the long side ``int(size * long /
short)``, an image whose short side already is ``size`` is returned as is, otherwise PIL's
``Image.resize(..., BILINEAR)`` does the pixels; then ``uint8 / 255`` in float32 and
``(x - mean) / std`` in float32. Stored as ``pixel_cases.digests`` for each size of
``pixel_cases.SIZES``.
"""
import argparse
import os
import re
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'pixels_regseg.json')
sys.path.insert(0, HERE)

import pixel_cases as pc  # noqa: E402

CONFIGS = {'regseg/cityscapes': 'configs/cityscapes_1000epochs.yaml', 'regseg/camvid': 'configs/camvid_200epochs.yaml'}
MEAN01, STD01 = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # RegSeg data.build_val_transform


def val_input_size(regseg, rel):
    with open(os.path.join(regseg, rel)) as f:
        return int(re.search(r'^val_input_size:\s*(\d+)', f.read(), re.M).group(1))


def torchvision_resize(img, size):
    """torchvision's PIL ``resize(img, size)`` with an int size (functional_pil.py)."""
    from PIL import Image
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    if short == size:
        return img
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return img.resize((new_w, new_h), Image.BILINEAR)


def to_tensor_normalize(img):
    """torchvision ``to_tensor`` (uint8 HWC -> CHW float32 / 255) then ``normalize``."""
    import torch
    t = torch.from_numpy(np.array(img, np.uint8, copy=True)).permute(2, 0, 1).contiguous()
    t = t.to(dtype=torch.float32).div(255)
    mean = torch.as_tensor(MEAN01, dtype=torch.float32).view(-1, 1, 1)
    std = torch.as_tensor(STD01, dtype=torch.float32).view(-1, 1, 1)
    return t.sub(mean).div(std).numpy()


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--regseg', required=True, help="a checkout of RolandGao/RegSeg (its configs/*.yaml)")
    args = p.parse_args()
    import PIL
    import torch
    from PIL import Image
    mean, std = [m * 255 for m in MEAN01], [s * 255 for s in STD01]
    val = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, rel in CONFIGS.items():
            size = val_input_size(args.regseg, rel)
            val[key] = {'reference': pc.REFERENCES[key], 'config': rel, 'val_input_size': size,
                        'pipeline': [f'ValResize({size}) (torchvision resize, PIL bilinear)', 'ToTensor',
                                     f'Normalize({MEAN01}, {STD01})'], 'mean': mean, 'std': std,
                        **pc.record_val(key, tmp, lambda png, size=size: to_tensor_normalize(
                            torchvision_resize(Image.open(png).convert('RGB'), size)), mean, std)}
    pc.save_manifest(OUT, 'tests/manifests/pixels_regseg.py', {'pillow': PIL.__version__, 'torch': torch.__version__},
                     val=val)


if __name__ == '__main__':
    main()
