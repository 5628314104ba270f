"""Train/val transforms of the mmseg and PaddleSeg recipes, on the sample dict of ``base.py``.

A sample is ``{'img': HxWx3 float32 RGB 0-255, 'label': HxW int64 or None, ...}``; every
transform returns it with image and label changed together (image bilinear, label nearest,
padding with the ignore index). Randomness draws from the global ``random`` / ``np.random``,
which ``Dataset.__getitem__`` seeds per sample.

Two families, both usable from YAML:

* mmseg / mmcv: ``RandomRescale`` (mmcv ``RandomResize`` + ``Resize``), ``RandomCrop``,
  ``Pad``, ``PhotoMetricDistortion``, ``Resize``.
* PaddleSeg: ``ResizeStepScaling``, ``RandomPaddingCrop``, ``RandomDistort``,
  ``ResizeByShort``; RegSeg's ``RandomResizeShortSide``.
* Shared: ``RandomHorizontalFlip``, ``Normalize``.

Sizes follow the reference each transform comes from, and the docstrings say which order
(``(w, h)`` for mmcv scales and PaddleSeg sizes, ``(h, w)`` for mmseg crops and pads).
"""
import random

import cv2
import numpy as np

from ..utils.errors import ConfigError
from ..utils.registry import TRANSFORMS

# -- helpers -----------------------------------------------------------------------


def _bad(transform, param, expected, value):
    return ConfigError(f'{transform}.{param}: expected {expected}, got {value!r}')


def _pair(transform, param, value, kind=int, positive=True):
    """Check a 2-element size/range parameter; return it as a tuple."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and kind is int:
        value = (value, value)
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if ok and kind is int:
        ok = all(float(v).is_integer() for v in value)
    if ok and positive:
        ok = all(v > 0 for v in value)
    if not ok:
        what = 'integers' if kind is int else 'numbers'
        raise _bad(transform, param, f'a list of 2 {"positive " if positive else ""}{what}', value)
    return tuple(kind(v) for v in value)


def _range(transform, param, value, positive=True):
    lo, hi = _pair(transform, param, value, kind=float, positive=positive)
    if lo > hi:
        raise _bad(transform, param, '[min, max] with min <= max', value)
    return lo, hi


def _number(transform, param, value, minimum=None, maximum=None):
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise _bad(transform, param, 'a number', value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        lo = '-inf' if minimum is None else minimum
        hi = 'inf' if maximum is None else maximum
        raise _bad(transform, param, f'a number in [{lo}, {hi}]', value)
    return value


def rescale_size(w, h, scale):
    """mmcv ``rescale_size``: the largest (w, h) with the same aspect ratio whose long side
    fits ``max(scale)`` and short side fits ``min(scale)``; rounding ``int(x * f + 0.5)``.
    ``scale`` is a number (a plain factor) or a (w, h) pair."""
    if isinstance(scale, (int, float)):
        factor = float(scale)
    else:
        factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(w * factor + 0.5), int(h * factor + 0.5), factor


def resize_sample(sample, w, h):
    """Resize image (bilinear) and label (nearest) to (w, h)."""
    img = sample['img']
    if img.shape[1] != w or img.shape[0] != h:
        sample['img'] = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        if sample.get('label') is not None:
            # cv2 has no int64 resize; train ids fit in int32.
            lab = sample['label'].astype(np.int32)
            sample['label'] = cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST).astype(np.int64)
    return sample


def pad_sample(sample, h, w, pad_val, seg_pad_val):
    """Pad bottom/right to at least (h, w): image with ``pad_val``, label with ``seg_pad_val``."""
    img = sample['img']
    ph, pw = max(h - img.shape[0], 0), max(w - img.shape[1], 0)
    if ph or pw:
        sample['img'] = np.pad(img, ((0, ph), (0, pw), (0, 0)), constant_values=pad_val)
        if sample.get('label') is not None:
            sample['label'] = np.pad(sample['label'], ((0, ph), (0, pw)), constant_values=seg_pad_val)
    return sample


def crop_sample(sample, y1, y2, x1, x2):
    sample['img'] = sample['img'][y1:y2, x1:x2]
    if sample.get('label') is not None:
        sample['label'] = sample['label'][y1:y2, x1:x2]
    return sample


def _crop_box(img_h, img_w, crop_h, crop_w):
    """mmseg ``generate_crop_bbox``: uniform offset; a smaller image is taken whole."""
    off_h = np.random.randint(0, max(img_h - crop_h, 0) + 1)
    off_w = np.random.randint(0, max(img_w - crop_w, 0) + 1)
    return off_h, off_h + crop_h, off_w, off_w + crop_w


def _crop_with_cat_max_ratio(sample, crop_h, crop_w, cat_max_ratio, ignore_index, tries=10):
    """Draw a crop box; with ``cat_max_ratio < 1`` redraw (up to ``tries`` times) while one
    class covers ``>= cat_max_ratio`` of the crop's non-ignored pixels (mmseg RandomCrop,
    PaddleSeg RandomPaddingCrop ``category_max_ratio``)."""
    h, w = sample['img'].shape[:2]
    box = _crop_box(h, w, crop_h, crop_w)
    label = sample.get('label')
    if cat_max_ratio < 1.0 and label is not None:
        for _ in range(tries):
            y1, y2, x1, x2 = box
            classes, cnt = np.unique(label[y1:y2, x1:x2], return_counts=True)
            cnt = cnt[classes != ignore_index]
            if len(cnt) > 1 and cnt.max() / cnt.sum() < cat_max_ratio:
                break
            box = _crop_box(h, w, crop_h, crop_w)
    return crop_sample(sample, *box)


def _to_uint8(img):
    """Float 0-255 image to uint8 the way a uint8 pipeline holds it (rounded, clipped)."""
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# -- resizing ----------------------------------------------------------------------


@TRANSFORMS.register()
class RandomRescale:
    """mmseg ``RandomResize(scale, ratio_range, keep_ratio)``.

    ``scale`` is (w, h). A ratio is drawn uniformly from ``ratio_range`` and the target is
    ``(int(w * ratio), int(h * ratio))``; with ``keep_ratio`` the image is rescaled to the
    largest size whose long side fits the target's long side and short side its short side
    (mmcv ``rescale_size``), otherwise resized to the target exactly.
    """

    def __init__(self, scale=(2048, 1024), ratio_range=(0.5, 2.0), keep_ratio=True):
        self.scale = _pair('RandomRescale', 'scale', scale)
        self.ratio_range = _range('RandomRescale', 'ratio_range', ratio_range)
        self.keep_ratio = bool(keep_ratio)

    def __call__(self, sample):
        lo, hi = self.ratio_range
        ratio = np.random.random_sample() * (hi - lo) + lo
        target = int(self.scale[0] * ratio), int(self.scale[1] * ratio)
        h, w = sample['img'].shape[:2]
        if self.keep_ratio:
            new_w, new_h, _ = rescale_size(w, h, target)
        else:
            new_w, new_h = target
        return resize_sample(sample, new_w, new_h)


@TRANSFORMS.register()
class Resize:
    """Resize to ``target_size`` (w, h); with ``keep_ratio`` rescale within it by the mmcv rule
    (mmseg's ``Resize(scale=(2048, 512), keep_ratio=True)`` val transform of ADE20K).

    The label is resized too when present; in val mode the dataset still scores against the
    original label (logits are resized back to it).
    """

    def __init__(self, target_size=(2048, 1024), keep_ratio=False):
        self.target_size = _pair('Resize', 'target_size', target_size)
        self.keep_ratio = bool(keep_ratio)

    def __call__(self, sample):
        h, w = sample['img'].shape[:2]
        if self.keep_ratio:
            new_w, new_h, _ = rescale_size(w, h, self.target_size)
        else:
            new_w, new_h = self.target_size
        return resize_sample(sample, new_w, new_h)


@TRANSFORMS.register()
class ResizeStepScaling:
    """PaddleSeg ``ResizeStepScaling``: a factor from ``min:step:max`` (uniform in
    [min, max] when ``scale_step_size`` is 0); new size ``round(factor * side)``."""

    def __init__(self, min_scale_factor=0.75, max_scale_factor=1.25, scale_step_size=0.25):
        _number('ResizeStepScaling', 'min_scale_factor', min_scale_factor, minimum=1e-6)
        _number('ResizeStepScaling', 'max_scale_factor', max_scale_factor, minimum=1e-6)
        _number('ResizeStepScaling', 'scale_step_size', scale_step_size, minimum=0)
        if min_scale_factor > max_scale_factor:
            raise _bad('ResizeStepScaling', 'min_scale_factor', f'<= max_scale_factor ({max_scale_factor})',
                       min_scale_factor)
        self.min_scale_factor = float(min_scale_factor)
        self.max_scale_factor = float(max_scale_factor)
        self.scale_step_size = float(scale_step_size)

    def _factor(self):
        lo, hi, step = self.min_scale_factor, self.max_scale_factor, self.scale_step_size
        if lo == hi:
            return lo
        if step == 0:
            return np.random.uniform(lo, hi)
        factors = np.linspace(lo, hi, int((hi - lo) / step + 1)).tolist()
        np.random.shuffle(factors)
        return factors[0]

    def __call__(self, sample):
        f = self._factor()
        h, w = sample['img'].shape[:2]
        return resize_sample(sample, int(round(f * w)), int(round(f * h)))


@TRANSFORMS.register()
class ResizeByShort:
    """PaddleSeg ``ResizeByShort``: short side to ``short_size`` (lowered so that the long
    side stays within ``max_size`` when ``max_size > 0``); sides ``round(side * scale)``."""

    def __init__(self, short_size=1024, max_size=-1):
        _number('ResizeByShort', 'short_size', short_size, minimum=1)
        _number('ResizeByShort', 'max_size', max_size)
        self.short_size = int(short_size)
        self.max_size = int(max_size)

    def __call__(self, sample):
        h, w = sample['img'].shape[:2]
        short = self.short_size
        if self.max_size > 0 and short / min(h, w) * max(h, w) > self.max_size:
            short = int(self.max_size / max(h, w) * min(h, w))
        scale = short / min(h, w)
        return resize_sample(sample, int(round(w * scale)), int(round(h * scale)))


@TRANSFORMS.register()
class RandomResizeShortSide:
    """RegSeg's ``RandomResize(min_size, max_size)`` (``transforms.py``): the SHORT side is
    drawn uniformly from the integers in ``short_range`` (inclusive; Cityscapes' short side is
    1024, so 400-1600 is 0.39x-1.56x) and the long side becomes ``int(short * long / old_short)``
    (torchvision ``resize(img, size)``). ``max_size > 0`` caps the long side as torchvision's
    ``max_size`` does."""

    def __init__(self, short_range=(400, 1600), max_size=-1):
        lo, hi = _range('RandomResizeShortSide', 'short_range', short_range)
        if not (float(lo).is_integer() and float(hi).is_integer()):
            raise _bad('RandomResizeShortSide', 'short_range', 'a list of 2 positive integers', short_range)
        _number('RandomResizeShortSide', 'max_size', max_size)
        self.short_range = (int(lo), int(hi))
        self.max_size = int(max_size)

    def __call__(self, sample):
        size = random.randint(*self.short_range)
        h, w = sample['img'].shape[:2]
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = size, int(size * long / short)
        if self.max_size > 0 and new_long > self.max_size:
            new_short, new_long = int(self.max_size * new_short / new_long), self.max_size
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
        return resize_sample(sample, new_w, new_h)


# -- cropping and padding ----------------------------------------------------------


@TRANSFORMS.register()
class RandomCrop:
    """mmseg ``RandomCrop``: ``crop_size`` is (h, w); an image smaller than the crop is kept
    whole along that side (pad afterwards with ``Pad``). With ``cat_max_ratio < 1`` the box is
    redrawn up to 10 times until no single class covers ``cat_max_ratio`` of the crop's
    non-ignored pixels."""

    def __init__(self, crop_size=(512, 1024), cat_max_ratio=1.0, ignore_index=255):
        self.crop_size = _pair('RandomCrop', 'crop_size', crop_size)
        self.cat_max_ratio = float(_number('RandomCrop', 'cat_max_ratio', cat_max_ratio, minimum=1e-6))
        self.ignore_index = ignore_index

    def __call__(self, sample):
        crop_h, crop_w = self.crop_size
        return _crop_with_cat_max_ratio(sample, crop_h, crop_w, self.cat_max_ratio, self.ignore_index)


@TRANSFORMS.register()
class RandomPaddingCrop:
    """PaddleSeg ``RandomPaddingCrop``: ``crop_size`` is [w, h]; pad bottom/right to the crop
    size (image ``im_padding_value``, label ``label_padding_value``), then crop at a uniform
    offset. ``category_max_ratio`` as in PaddleSeg 2.8 (1.0 = off)."""

    def __init__(self, crop_size=(512, 512), im_padding_value: float = 0, label_padding_value=255,
                 category_max_ratio=1.0, ignore_index=255):
        self.crop_size = _pair('RandomPaddingCrop', 'crop_size', crop_size)
        self.im_padding_value = float(_number('RandomPaddingCrop', 'im_padding_value', im_padding_value))
        self.label_padding_value = label_padding_value
        self.category_max_ratio = float(_number('RandomPaddingCrop', 'category_max_ratio', category_max_ratio,
                                                minimum=1e-6))
        self.ignore_index = ignore_index

    def __call__(self, sample):
        crop_w, crop_h = self.crop_size
        h, w = sample['img'].shape[:2]
        if (h, w) == (crop_h, crop_w):
            return sample
        sample = pad_sample(sample, crop_h, crop_w, self.im_padding_value, self.label_padding_value)
        return _crop_with_cat_max_ratio(sample, crop_h, crop_w, self.category_max_ratio, self.ignore_index)


@TRANSFORMS.register()
class Pad:
    """Pad bottom/right to ``size`` (h, w): image with ``pad_val``, label with ``seg_pad_val``
    (mmseg pads the crop to the crop size after ``RandomCrop``). Larger images are unchanged."""

    def __init__(self, size=(512, 1024), pad_val: float = 0, seg_pad_val=255):
        self.size = _pair('Pad', 'size', size)
        self.pad_val = float(_number('Pad', 'pad_val', pad_val))
        self.seg_pad_val = seg_pad_val

    def __call__(self, sample):
        return pad_sample(sample, self.size[0], self.size[1], self.pad_val, self.seg_pad_val)


# -- flips -------------------------------------------------------------------------


@TRANSFORMS.register()
class RandomHorizontalFlip:
    """Flip left-right with probability ``prob``. ``swap_pairs`` (e.g. LIP's
    ``[[14, 15], [16, 17], [18, 19]]``, left/right arm, leg, shoe) swaps those class ids in the
    flipped label so a left arm stays labelled 'left arm'."""

    def __init__(self, prob=0.5, swap_pairs=None):
        self.prob = float(_number('RandomHorizontalFlip', 'prob', prob, minimum=0, maximum=1))
        pairs = []
        for p in swap_pairs or []:
            if not (isinstance(p, (list, tuple)) and len(p) == 2 and all(
                    isinstance(v, int) and not isinstance(v, bool) for v in p)):
                raise _bad('RandomHorizontalFlip', 'swap_pairs', 'a list of [a, b] class id pairs', swap_pairs)
            pairs.append((int(p[0]), int(p[1])))
        self.swap_pairs = pairs

    def __call__(self, sample):
        if random.random() < self.prob:
            sample['img'] = np.ascontiguousarray(sample['img'][:, ::-1])
            label = sample.get('label')
            if label is not None:
                label = np.ascontiguousarray(label[:, ::-1])
                if self.swap_pairs:
                    flipped = label.copy()
                    for a, b in self.swap_pairs:
                        flipped[label == a] = b
                        flipped[label == b] = a
                    label = flipped
                sample['label'] = label
        return sample


# -- photometric -------------------------------------------------------------------


@TRANSFORMS.register()
class PhotoMetricDistortion:
    """mmseg ``PhotoMetricDistortion``; each step happens with probability 0.5:
    brightness (+U(-delta, delta)), contrast (xU(range)) either second or last (random mode),
    saturation (HSV S x U(range)), hue (H + randint(-delta, delta) mod 180), HSV via OpenCV
    on uint8 values, each step clipping to uint8 as mmseg's ``convert`` does. The label is
    untouched. Our images are RGB, so RGB<->HSV is used where mmseg uses BGR<->HSV on BGR."""

    def __init__(self, brightness_delta: float = 32, contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5),
                 hue_delta=18):
        name = 'PhotoMetricDistortion'
        self.brightness_delta = float(_number(name, 'brightness_delta', brightness_delta, minimum=0))
        self.contrast_range = _range(name, 'contrast_range', contrast_range, positive=False)
        self.saturation_range = _range(name, 'saturation_range', saturation_range, positive=False)
        self.hue_delta = int(_number(name, 'hue_delta', hue_delta, minimum=0, maximum=180))

    @staticmethod
    def _convert(img, alpha=1.0, beta=0.0):
        return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def _contrast(self, img):
        if np.random.randint(2):
            img = self._convert(img, alpha=np.random.uniform(*self.contrast_range))
        return img

    def __call__(self, sample):
        img = _to_uint8(sample['img'])
        if np.random.randint(2):
            img = self._convert(img, beta=np.random.uniform(-self.brightness_delta, self.brightness_delta))
        mode = np.random.randint(2)
        if mode == 1:
            img = self._contrast(img)
        if np.random.randint(2):
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            hsv[:, :, 1] = self._convert(hsv[:, :, 1], alpha=np.random.uniform(*self.saturation_range))
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if np.random.randint(2):
            hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
            shift = np.random.randint(-self.hue_delta, self.hue_delta) if self.hue_delta else 0
            hsv[:, :, 0] = (hsv[:, :, 0].astype(np.int64) + shift) % 180
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
        if mode == 0:
            img = self._contrast(img)
        sample['img'] = img.astype(np.float32)
        return sample


@TRANSFORMS.register()
class RandomDistort:
    """PaddleSeg ``RandomDistort``: brightness, contrast, saturation, sharpness and hue, in a
    random order, each with its probability and a factor ``U(1 - range, 1 + range)`` (hue: a
    shift ``U(-hue_range, hue_range)`` on PIL's 0-255 hue). PIL ``ImageEnhance`` on the uint8
    image, as PaddleSeg does. The label is untouched."""

    def __init__(self, brightness_range=0.5, brightness_prob=0.5, contrast_range=0.5, contrast_prob=0.5,
                 saturation_range=0.5, saturation_prob=0.5, hue_range: float = 18, hue_prob=0.5,
                 sharpness_range=0.5, sharpness_prob=0.0):
        name = 'RandomDistort'
        args = dict(brightness_range=brightness_range, brightness_prob=brightness_prob,
                    contrast_range=contrast_range, contrast_prob=contrast_prob,
                    saturation_range=saturation_range, saturation_prob=saturation_prob, hue_range=hue_range,
                    hue_prob=hue_prob, sharpness_range=sharpness_range, sharpness_prob=sharpness_prob)
        for k, v in args.items():
            _number(name, k, v, minimum=0, maximum=1 if k.endswith('_prob') else None)
            setattr(self, k, float(v))

    def __call__(self, sample):
        from PIL import Image, ImageEnhance  # only this transform needs PIL

        def enhance(cls, rng):
            return lambda im: cls(im).enhance(np.random.uniform(1 - rng, 1 + rng))

        def hue(im):
            delta = np.random.uniform(-self.hue_range, self.hue_range)
            hsv = np.array(im.convert('HSV'))
            # PaddleSeg adds a float to the uint8 hue and stores it back: wrap around 256.
            hsv[:, :, 0] = np.trunc(hsv[:, :, 0] + delta).astype(np.int64) % 256
            return Image.fromarray(hsv, mode='HSV').convert('RGB')

        ops = [(enhance(ImageEnhance.Brightness, self.brightness_range), self.brightness_prob),
               (enhance(ImageEnhance.Contrast, self.contrast_range), self.contrast_prob),
               (enhance(ImageEnhance.Color, self.saturation_range), self.saturation_prob),
               (enhance(ImageEnhance.Sharpness, self.sharpness_range), self.sharpness_prob),
               (hue, self.hue_prob)]
        random.shuffle(ops)
        im = Image.fromarray(np.clip(sample['img'], 0, 255).astype(np.uint8))
        for op, prob in ops:
            if np.random.uniform(0, 1) < prob:
                im = op(im)
        sample['img'] = np.asarray(im).astype(np.float32)
        return sample


@TRANSFORMS.register()
class Normalize:
    """``(img - mean) / std`` per RGB channel, both in 0-255 units. The defaults are
    PaddleSeg's 0.5/0.5 (-> [-1, 1]); mmseg configs use mean [123.675, 116.28, 103.53],
    std [58.395, 57.12, 57.375]."""

    def __init__(self, mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5)):
        for k, v in (('mean', mean), ('std', std)):
            if not (isinstance(v, (list, tuple)) and len(v) == 3 and all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
                raise _bad('Normalize', k, 'a list of 3 numbers (RGB, 0-255 units)', v)
        if any(s <= 0 for s in std):
            raise _bad('Normalize', 'std', 'positive values', std)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def __call__(self, sample):
        sample['img'] = (sample['img'].astype(np.float32) - self.mean) / self.std
        return sample
