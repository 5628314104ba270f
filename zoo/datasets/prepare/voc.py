"""Pascal VOC 2012 + SBD -> ``SegmentationClassAug`` and the 10,582-image ``train_aug`` list.

Inputs: ``VOCdevkit/VOC2012`` (JPEGImages, SegmentationClass palette PNGs, ImageSets/Segmentation
lists) and SBD's ``benchmark_RELEASE/dataset`` (``cls/<id>.mat`` with ``GTcls.Segmentation``,
``train.txt``, ``val.txt``).

``VOC2012/SegmentationClassAug/<id>.png`` gets a single-channel class-id PNG for every image of
SBD and of VOC's own lists. Where both annotate an image, VOC's annotation wins (it is finer
and carries the 255 boundary band), as in PaddleSeg's and mmseg's ``trainaug`` which read
``SegmentationClass`` for the VOC train ids. Lists written to ``ImageSets/Segmentation``:
``train_aug.txt`` = (SBD train + SBD val + VOC train) - VOC val (10,582 ids on the full data),
and ``aug.txt`` = train_aug - VOC train (PaddleSeg's name for the SBD-only part).
"""
import os

import numpy as np

from ...utils.errors import DataError
from ..meta import voc_palette
from .common import parallel_map, read_id_list, require_dir, write_ids, write_label_png

VOC_TREE = ('<voc_root>/VOC2012/{JPEGImages/<id>.jpg, SegmentationClass/<id>.png, '
            'ImageSets/Segmentation/{train,val}.txt} (VOCtrainval_11-May-2012.tar extracted; <voc_root> is VOCdevkit)')

SBD_TREE = ('<sbd_root>/dataset/{cls/<id>.mat, train.txt, val.txt} (benchmark.tgz extracted; '
            '<sbd_root> is benchmark_RELEASE)')
NUM_CLASSES = 21
TRAIN_AUG_LEN = 10582


def read_voc_png(path):
    """Class ids of a VOC ``SegmentationClass`` palette PNG (uint8 HxW, 255 boundary kept)."""
    from PIL import Image  # Pillow ships with paddlepaddle; OpenCV expands palettes to color

    try:
        img = Image.open(path)
        img.load()
    except (OSError, ValueError) as e:
        raise DataError(f'PascalVOC: cannot read {path!r}: {e}') from None
    if img.mode == 'P':
        return np.asarray(img, dtype=np.uint8)
    if img.mode == 'L':
        return np.asarray(img, dtype=np.uint8)
    # an RGB rendering of the palette (re-saved by some tool): invert the VOC color map
    rgb = np.asarray(img.convert('RGB'), dtype=np.int64)
    code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    pal = voc_palette().astype(np.int64)
    lut = {int((r << 16) | (g << 8) | b): i for i, (r, g, b) in enumerate(pal) if i < NUM_CLASSES or i == 255}
    out = np.full(code.shape, 255, dtype=np.uint8)
    known = np.zeros(code.shape, dtype=bool)
    for c, i in lut.items():
        m = code == c
        out[m] = i
        known |= m
    if not known.all():
        raise DataError(f'PascalVOC: {path!r} has colors outside the VOC palette')
    return out


def read_sbd_mat(path):
    """Class ids of an SBD ``cls/<id>.mat`` (``GTcls.Segmentation``), uint8 HxW."""
    from scipy.io import loadmat

    try:
        data = loadmat(path)
        seg = data['GTcls'][0, 0]['Segmentation']
    except (KeyError, IndexError, ValueError) as e:
        raise DataError(f'PascalVOC: {path!r} is not an SBD class annotation (GTcls.Segmentation): {e}') from None
    except Exception as e:  # corrupt .mat
        raise DataError(f'PascalVOC: cannot read {path!r}: {e}') from None
    return np.asarray(seg).astype(np.uint8)


def _convert(job):
    kind, src, dst = job
    label = read_voc_png(src) if kind == 'voc' else read_sbd_mat(src)
    bad = (label != 255) & (label >= NUM_CLASSES)
    if bad.any():
        raise DataError(f'PascalVOC: {src!r} has values {np.unique(label[bad])[:5].tolist()} outside '
                        f'[0, {NUM_CLASSES - 1}] (ignore index 255)')
    write_label_png(dst, label)


def prepare_voc_aug(voc_root, sbd_root, nproc=1, expect_full=False):
    """Build ``SegmentationClassAug`` and the lists; return ``{list: count}``."""
    voc = require_dir(os.path.join(voc_root, 'VOC2012'), 'PascalVOC', VOC_TREE)
    img_dir = require_dir(os.path.join(voc, 'JPEGImages'), 'PascalVOC', VOC_TREE)
    cls_dir = require_dir(os.path.join(voc, 'SegmentationClass'), 'PascalVOC', VOC_TREE)
    sets = require_dir(os.path.join(voc, 'ImageSets', 'Segmentation'), 'PascalVOC', VOC_TREE)
    sbd = require_dir(os.path.join(sbd_root, 'dataset'), 'SBD', SBD_TREE)
    sbd_cls = require_dir(os.path.join(sbd, 'cls'), 'SBD', SBD_TREE)
    voc_train = read_id_list(os.path.join(sets, 'train.txt'), 'PascalVOC', VOC_TREE)
    voc_val = read_id_list(os.path.join(sets, 'val.txt'), 'PascalVOC', VOC_TREE)
    sbd_ids = (read_id_list(os.path.join(sbd, 'train.txt'), 'SBD', SBD_TREE)
               + read_id_list(os.path.join(sbd, 'val.txt'), 'SBD', SBD_TREE))

    val_set = set(voc_val)
    train_aug = sorted(set(sbd_ids + voc_train) - val_set)
    if expect_full and len(train_aug) != TRAIN_AUG_LEN:
        raise DataError(f'PascalVOC: train_aug has {len(train_aug)} ids, expected {TRAIN_AUG_LEN} '
                        '(incomplete VOC or SBD download?)')
    voc_ids = set(voc_train) | val_set
    out_dir = os.path.join(voc, 'SegmentationClassAug')
    jobs = []
    for i in sorted(set(train_aug) | voc_ids):
        if not os.path.isfile(os.path.join(img_dir, f'{i}.jpg')):
            missing = os.path.join(img_dir, f'{i}.jpg')
            raise DataError(f'PascalVOC: image {missing!r} does not exist; expected {VOC_TREE}')
        if i in voc_ids:
            src, kind = os.path.join(cls_dir, f'{i}.png'), 'voc'
        else:
            src, kind = os.path.join(sbd_cls, f'{i}.mat'), 'sbd'
        if not os.path.isfile(src):
            tree = VOC_TREE if kind == 'voc' else SBD_TREE
            raise DataError(f'PascalVOC: annotation {src!r} does not exist; expected {tree}')
        jobs.append((kind, src, os.path.join(out_dir, f'{i}.png')))
    os.makedirs(out_dir, exist_ok=True)
    parallel_map(_convert, jobs, nproc)
    write_ids(os.path.join(sets, 'train_aug.txt'), train_aug)
    aug = sorted(set(train_aug) - set(voc_train))
    write_ids(os.path.join(sets, 'aug.txt'), aug)
    return {'train_aug': len(train_aug), 'aug': len(aug), 'train': len(voc_train), 'val': len(voc_val)}
