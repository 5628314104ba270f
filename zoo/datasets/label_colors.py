"""Colour-coded labels -> single-channel class ids (``tools/data/pseudo_color2gray.py``).

Users arrive with labels in three shapes besides the 8-bit ids the loader reads:

* a palette PNG (VOC, labelme, ``gray2pseudo_color.py``): the pixel values already are the ids
  and the palette only colours them, so the ids are taken as they are;
* an RGB(A) image whose channels are equal (a grey mask saved as colour): one channel;
* an RGB(A) colour mask: each colour is looked up in the dataset's palette (``palette[i]`` is the
  colour of class ``i``); a colour that is not in it becomes ``ignore_index`` and is counted.
"""
import os

import numpy as np

from ..utils.errors import DataError
from .scan import MAX_VALUES


def label_to_ids(path, palette=None, ignore_index=255):
    """``(HxW uint8 ids, pixels of unknown colours, how it was read)`` for one label image."""
    from PIL import Image
    try:
        im = Image.open(path)
        im.load()
    except Exception as e:  # noqa: BLE001  (Pillow raises many types for bad files)
        raise DataError(f'label {path!r} cannot be read ({e})') from None
    if im.mode == 'P':
        return np.asarray(im, dtype=np.uint8), 0, 'palette indices'
    if im.mode in ('1', 'L'):
        return np.asarray(im.convert('L') if im.mode == 'L' else im, dtype=np.uint8), 0, 'grey'
    if im.mode in ('I', 'I;16', 'I;16B', 'I;16L'):
        arr = np.asarray(im).astype(np.int64)
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise DataError(f'label {path!r} has 16-bit values up to {arr.max()}: ids must fit 0..255')
        return arr.astype(np.uint8), 0, '16-bit'
    rgb = np.asarray(im.convert('RGB'), dtype=np.int64)
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        return rgb[..., 0].astype(np.uint8), 0, 'equal channels'
    if palette is None:
        raise DataError(f'label {path!r} is a colour mask: give the class colours (--config, --colors or --palette)')
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    table = {}
    for i, (r, g, b) in enumerate(palette):
        table.setdefault((int(r) << 16) | (int(g) << 8) | int(b), i)  # the first class of a colour wins
    uniq, inverse = np.unique(codes, return_inverse=True)
    if len(uniq) > MAX_VALUES:
        raise DataError(f'label {path!r} has {len(uniq)} colours: a photo or a JPEG-compressed mask, not a colour '
                        'label (labels must be lossless PNG)')
    lut = np.array([table.get(int(c), ignore_index) for c in uniq], dtype=np.uint8)
    ids = lut[inverse.reshape(codes.shape)]
    unknown = int(sum(int((inverse == k).sum()) for k, c in enumerate(uniq) if int(c) not in table))
    return ids, unknown, 'colours'


def convert_labels(src, dst, palette=None, ignore_index=255):
    """Convert a label file or every ``*.png`` under a folder (sub-folders kept) into 8-bit id PNGs
    under ``dst``; returns ``[(src, dst, unknown colour pixels, how)]``."""
    import cv2
    if os.path.isdir(src):
        files = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(src) for f in fs if f.lower().endswith('.png'))
        if not files:
            raise DataError(f'no *.png labels under {src!r}')
        pairs = [(f, os.path.join(dst, os.path.relpath(f, src))) for f in files]
    elif os.path.isfile(src):
        pairs = [(src, dst if dst.lower().endswith('.png') else os.path.join(dst, os.path.basename(src)))]
    else:
        raise DataError(f'{src!r} does not exist (expected a label PNG or a folder of them)')
    out = []
    for s, d in pairs:
        ids, unknown, how = label_to_ids(s, palette, ignore_index)
        os.makedirs(os.path.dirname(os.path.abspath(d)), exist_ok=True)
        if not cv2.imwrite(d, ids):
            raise DataError(f'cannot write {d!r}')
        out.append((s, d, unknown, how))
    return out
