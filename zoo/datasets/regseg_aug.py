"""RegSeg's training-data extras: the reduced RandAugment and class-uniform sampling.

* ``RegSegRandAugment``: RandAugment (Cubuk et al. 2019) as RegSeg's ``augment.py`` applies it
  to segmentation (``aug_mode: randaug_reduced``): N ops drawn without replacement from
  auto-contrast, equalize, rotate, color, contrast, brightness, sharpness, each at magnitude M
  (0.2: +-6 degrees, enhancement factor 1 +- 0.18, the sign drawn per op). Rotation moves the
  label with nearest-neighbour sampling and fills uncovered pixels with the ignore index. The
  reference runs on PIL uint8 images; here the image is rounded to uint8, processed with
  numpy/OpenCV following PIL's formulas, and returned as float32.
* ``ClassUniformDataset``: a dataset wrapper for class-uniform sampling (the reference's
  ``class_uniform_pct``, from NVIDIA's semantic-segmentation code). With probability
  ``class_uniform_pct`` a sample is replaced by one drawn class-first: a class uniformly among
  the classes present in the training set, then an image containing it. The per-class image
  index is computed once from the labels (and cached in ``index_file``). Simplification: the
  reference also centres the crop on a centroid of the drawn class; here the crop stays random.
"""
import json
import os
import random

import cv2
import numpy as np
import paddle

from ..utils.errors import ConfigError, DataError
from ..utils.logger import logger
from ..utils.registry import DATASETS, TRANSFORMS
from .base import read_label

# (min, max, the sign is random) per op, reference OP_RANGES
_RANGES = {
    'auto_contrast': (0.0, 1.0, False),
    'equalize': (0.0, 1.0, False),
    'rotate': (0.0, 30.0, True),
    'color_inc': (0.0, 0.9, True),
    'contrast_inc': (0.0, 0.9, True),
    'brightness_inc': (0.0, 0.9, True),
    'sharpness_inc': (0.0, 0.9, True),
}
REDUCED_OPS = tuple(_RANGES)


def _gray(img):
    """PIL's ``convert('L')``: ITU-R 601-2 luma, rounded."""
    r, g, b = (img[..., i].astype('int32') for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype('uint8')


def _blend(degenerate, img, factor):
    """PIL ``ImageEnhance``: degenerate + factor * (img - degenerate), clipped to uint8."""
    out = degenerate.astype('float32') + factor * (img.astype('float32') - degenerate.astype('float32'))
    return np.clip(np.rint(out), 0, 255).astype('uint8')


def auto_contrast(img):
    """Stretch each channel's [min, max] to [0, 255] (``ImageOps.autocontrast``, no cutoff)."""
    out = np.empty_like(img)
    for c in range(img.shape[2]):
        ch = img[..., c]
        lo, hi = int(ch.min()), int(ch.max())
        if hi <= lo:
            out[..., c] = ch
            continue
        scale = 255.0 / (hi - lo)
        lut = np.clip((np.arange(256) * scale - lo * scale).astype('int64'), 0, 255).astype('uint8')
        out[..., c] = lut[ch]
    return out


def equalize(img):
    """Histogram equalisation per channel with PIL's lookup table (``ImageOps.equalize``)."""
    out = np.empty_like(img)
    for c in range(img.shape[2]):
        ch = img[..., c]
        h = np.bincount(ch.reshape(-1), minlength=256)
        nonzero = h[h > 0]
        step = (int(nonzero.sum()) - int(nonzero[-1])) // 255 if nonzero.size else 0
        if not step:
            out[..., c] = ch
            continue
        # lut[i] = (step // 2 + sum(h[:i])) // step
        cum = np.concatenate([[0], np.cumsum(h)[:-1]])
        lut = np.clip((step // 2 + cum) // step, 0, 255).astype('uint8')
        out[..., c] = lut[ch]
    return out


def rotate(img, label, degrees, fill, ignore_index):
    """Rotate counter-clockwise about the image centre, size kept (PIL ``Image.rotate``)."""
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0 - 0.5, h / 2.0 - 0.5), degrees, 1.0)
    img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=tuple(int(v) for v in fill))
    if label is not None:
        label = cv2.warpAffine(label.astype('int32'), m, (w, h), flags=cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=int(ignore_index)).astype('int64')
    return img, label


def enhance(img, op, factor):
    if op == 'color_inc':
        degenerate = np.repeat(_gray(img)[..., None], 3, axis=2)
    elif op == 'contrast_inc':
        mean = int(_gray(img).mean() + 0.5)
        degenerate = np.full_like(img, mean)
    elif op == 'brightness_inc':
        degenerate = np.zeros_like(img)
    elif op == 'sharpness_inc':
        kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], 'float32') / 13.0
        smooth = np.clip(np.rint(cv2.filter2D(img.astype('float32'), -1, kernel)), 0, 255).astype('uint8')
        degenerate = img.copy()  # PIL's SMOOTH filter leaves the one-pixel border unchanged
        degenerate[1:-1, 1:-1] = smooth[1:-1, 1:-1]
    else:
        raise ValueError(op)
    return _blend(degenerate, img, 1.0 + factor)


@TRANSFORMS.register()
class RegSegRandAugment:
    """RegSeg's RandAugment for segmentation (``randaug_reduced``: 2 ops, magnitude 0.2).

    Args:
        num_ops: ops applied per sample (drawn without replacement).
        magnitude: in [0, 1]; the op's value is ``min + magnitude * (max - min)``.
        ops: op names (default: the reduced list of the reference).
        prob: probability of applying each drawn op.
        fill: image fill of rotated-in pixels, RGB 0-255 (reference: ImageNet mean * 255, truncated).
        ignore_index: label fill of rotated-in pixels.
    """

    def __init__(self, num_ops=2, magnitude=0.2, ops=None, prob=1.0, fill=(123, 116, 103), ignore_index=255):
        ops = list(ops) if ops else list(REDUCED_OPS)
        unknown = [o for o in ops if o not in _RANGES]
        if unknown:
            raise ConfigError(f'RegSegRandAugment.ops: unknown op {unknown[0]!r} (expected {", ".join(_RANGES)})')
        if not 0.0 <= magnitude <= 1.0:
            raise ConfigError(f'RegSegRandAugment.magnitude must be in [0, 1], got {magnitude}')
        if not 0 <= num_ops <= len(ops):
            raise ConfigError(f'RegSegRandAugment.num_ops must be in [0, {len(ops)}], got {num_ops}')
        self.num_ops, self.magnitude, self.ops, self.prob = int(num_ops), float(magnitude), ops, float(prob)
        self.fill, self.ignore_index = list(fill), ignore_index

    def __call__(self, sample):
        img = np.clip(np.rint(sample['img']), 0, 255).astype('uint8')
        label = sample.get('label')
        for op in random.sample(self.ops, self.num_ops):
            if self.prob < 1 and random.random() > self.prob:
                continue
            lo, hi, signed = _RANGES[op]
            v = self.magnitude * (hi - lo) + lo
            if signed and random.random() > 0.5:
                v = -v
            if op == 'auto_contrast':
                img = auto_contrast(img)
            elif op == 'equalize':
                img = equalize(img)
            elif op == 'rotate':
                img, label = rotate(img, label, v, self.fill, self.ignore_index)
            else:
                img = enhance(img, op, v)
        sample['img'] = img.astype('float32')
        sample['label'] = label
        return sample


# -- class-uniform sampling ----------------------------------------------------------

def build_class_index(file_list, encode_label, num_classes, ignore_index=255):
    """``{class_id: [image indices containing it]}`` from the label files of a file list."""
    index = {c: [] for c in range(num_classes)}
    for i, (_, label_path) in enumerate(file_list):
        if label_path is None:
            continue
        lab = encode_label(read_label(label_path), label_path)
        present = np.flatnonzero(np.bincount(lab[lab != ignore_index].reshape(-1), minlength=num_classes))
        for c in present:
            index[int(c)].append(i)
    return index


@DATASETS.register()
class ClassUniformDataset(paddle.io.Dataset):
    """Class-uniform sampling over another dataset (``class_uniform_pct`` of RegSeg).

    Args:
        dataset: the wrapped training dataset (a ``type:`` dict in YAML).
        class_uniform_pct: probability that a sample is drawn class-first (RegSeg: 0.5).
        index_file: JSON cache of the per-class image index (built from the labels if absent
            or stale).
    """

    def __init__(self, dataset, class_uniform_pct=0.5, index_file=''):
        if not 0.0 <= class_uniform_pct <= 1.0:
            raise ConfigError(f'ClassUniformDataset.class_uniform_pct must be in [0, 1], got {class_uniform_pct}')
        if not hasattr(dataset, 'file_list') or not hasattr(dataset, 'load_sample'):
            raise ConfigError('ClassUniformDataset.dataset: expected a zoo Dataset (with a file list)')
        self.dataset = dataset
        self.class_uniform_pct = float(class_uniform_pct)
        self.class_index = self._load_index(index_file)
        self.classes_present = [c for c, idx in sorted(self.class_index.items()) if idx]
        if not self.classes_present:
            raise DataError('ClassUniformDataset: no labelled pixels in the wrapped dataset')

    def _load_index(self, index_file):
        ds = self.dataset
        labels = [lp for _, lp in ds.file_list]
        if index_file and os.path.isfile(index_file):
            with open(index_file, encoding='utf-8') as f:
                cached = json.load(f)
            if cached.get('labels') == labels:
                return {int(c): v for c, v in cached['classes'].items()}
            logger.info(f'{index_file}: file list changed, rebuilding the class index')
        logger.info(f'building the class index of {len(labels)} labels for class-uniform sampling')
        index = build_class_index(ds.file_list, ds.encode_label, ds.num_classes, ds.ignore_index)
        if index_file:
            os.makedirs(os.path.dirname(os.path.abspath(index_file)), exist_ok=True)
            tmp = index_file + '.tmp'
            with open(tmp, 'w', encoding='utf-8') as f:
                json.dump({'labels': labels, 'classes': index}, f)
            os.replace(tmp, index_file)
        return index

    def __getattr__(self, name):  # num_classes, ignore_index, CLASSES, ... of the wrapped dataset
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self):
        return len(self.dataset)

    def pick(self, index):
        """The image index used for sample ``index`` (deterministic per seed, epoch, index)."""
        n = len(self.dataset)
        epoch, i = divmod(index, n)
        rng = random.Random((self.dataset.seed * 1_000_003 + epoch * 7919 + i) * 2 + 1)
        if rng.random() < self.class_uniform_pct:
            cls = rng.choice(self.classes_present)
            return rng.choice(self.class_index[cls])
        return i

    def __getitem__(self, index):
        ds = self.dataset
        ds._seed(index)  # the augmentation seed of this slot, as the wrapped dataset would use
        sample = ds.transforms(ds.load_sample(self.pick(index)))
        img = np.ascontiguousarray(sample['img'].transpose(2, 0, 1).astype('float32'))
        label = sample['label']
        if label is None:
            label = np.full(img.shape[1:], ds.ignore_index, dtype='int64')
        return img, np.ascontiguousarray(label.astype('int64'))

