"""RegSeg's reduced RandAugment (its class-uniform sampling is ``zoo/datasets/class_uniform.py``).

* ``RegSegRandAugment``: RandAugment (Cubuk et al. 2019) as RegSeg's ``augment.py`` applies it
  to segmentation (``aug_mode: randaug_reduced``): N ops drawn without replacement from
  auto-contrast, equalize, rotate, color, contrast, brightness, sharpness, each at magnitude M
  (0.2: +-6 degrees, enhancement factor 1 +- 0.18, the sign drawn per op). Rotation moves the
  label with nearest-neighbour sampling and fills uncovered pixels with the ignore index. The
  reference runs on PIL uint8 images; here the image is rounded to uint8, processed with
  numpy/OpenCV following PIL's formulas, and returned as uint8 (Normalize makes it float32).
"""
import random

import cv2
import numpy as np

from ..utils.errors import ConfigError
from ..utils.registry import TRANSFORMS
from .transforms import _to_uint8

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
        img = sample['img'] if sample['img'].dtype == np.uint8 else _to_uint8(sample['img'])
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
        sample['img'] = img  # uint8, as the pipeline holds images until Normalize
        sample['label'] = label
        return sample
