"""Train/val transforms of the mmseg, sssegmentation, RegSeg and PaddleSeg recipes, on the
sample dict of ``base.py``.

A sample is ``{'img': HxWx3 RGB, 'label': HxW class ids or None, ...}``; every transform returns
it with image and label changed together (image bilinear, label nearest, padding with the
ignore index). Randomness draws from the global ``random`` / ``np.random``, which
``Dataset.__getitem__`` seeds per sample.

Pixels follow the reference each transform comes from. ``read_image`` gives uint8, and the
mmseg / sssegmentation / RegSeg transforms keep uint8 as their references do (mmseg converts in
its data preprocessor, sssegmentation in ``Normalize``, RegSeg in ``ToTensor``): resizing a uint8
image rounds every pixel to an integer (OpenCV's fixed-point bilinear, or PIL's for RegSeg),
which is what the models were trained and evaluated on. ``Normalize`` is where the image
becomes float32, once. PaddleSeg reads images as float32, so its transforms
(``ResizeStepScaling``, ``RandomPaddingCrop``, ``ResizeByShort``, ``RandomDistort``) compute in
float32 as PaddleSeg does. Labels keep the dtype they were read with (uint8 for PNGs).

Families, all usable from YAML:

* mmseg / mmcv (and sssegmentation, whose transforms compute the same): ``RandomRescale``
  (mmcv ``RandomResize`` + ``Resize``), ``RandomCrop``, ``Pad``, ``PhotoMetricDistortion``,
  ``Resize``.
* RegSeg (torchvision on PIL images): ``RandomResizeShortSide``, ``ResizeShortSide``.
* PaddleSeg: ``ResizeStepScaling``, ``RandomPaddingCrop``, ``RandomDistort``, ``ResizeByShort``.
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


RESIZE_BACKENDS = ('cv2', 'pil')


def _check_backend(transform, backend):
    if backend not in RESIZE_BACKENDS:
        raise _bad(transform, 'backend', f'one of {", ".join(RESIZE_BACKENDS)}', backend)
    return backend


def resize_image(img, w, h, backend='cv2'):
    """Bilinear resize of an HxWxC image to (w, h), in the image's own dtype.

    ``cv2``: ``cv2.resize(INTER_LINEAR)``, what mmcv's ``imresize`` (mmseg), sssegmentation and
    PaddleSeg call; on uint8 OpenCV uses 11-bit fixed-point weights and rounds each result.
    ``pil``: PIL's ``BILINEAR`` (a triangle filter widened when shrinking, i.e. antialiased),
    what torchvision's ``resize`` does to the PIL images RegSeg trains on; uint8 as PIL holds
    RGB, a float image channel by channel in PIL's float mode.
    """
    if img.shape[0] == h and img.shape[1] == w:
        return img
    if backend == 'cv2':
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    from PIL import Image  # only RegSeg's transforms resize with PIL
    if img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3:
        return np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR))
    planes = img[..., None] if img.ndim == 2 else img
    out = [np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., c], dtype=np.float32))
                      .resize((w, h), Image.BILINEAR)) for c in range(planes.shape[2])]
    return np.stack(out, -1).astype(img.dtype, copy=False).reshape((h, w) + img.shape[2:])


def resize_label(label, w, h, backend='cv2'):
    """Nearest-neighbour resize of an HxW label map: OpenCV's ``INTER_NEAREST`` (source pixel
    ``floor(x * scale)``) or PIL's ``NEAREST`` (pixel centres), as the image's backend."""
    if label.shape[0] == h and label.shape[1] == w:
        return label
    dtype = label.dtype
    if dtype not in (np.uint8, np.uint16, np.int16, np.int32):
        label = label.astype(np.int32)  # neither cv2 nor PIL resizes int64; class ids fit
    if backend == 'cv2':
        out = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
    else:
        from PIL import Image
        out = np.asarray(Image.fromarray(label.astype(np.int32) if label.dtype == np.int16 else label)
                         .resize((w, h), Image.NEAREST))
    return out.astype(dtype, copy=False)


def resize_sample(sample, w, h, backend='cv2'):
    """Resize image (bilinear) and label (nearest) to (w, h); see ``resize_image``."""
    sample['img'] = resize_image(sample['img'], w, h, backend)
    if sample.get('label') is not None:
        sample['label'] = resize_label(sample['label'], w, h, backend)
    return sample


def as_float32(sample):
    """PaddleSeg's transforms see float32 images (PaddleSeg converts at read time)."""
    if sample['img'].dtype != np.float32:
        sample['img'] = sample['img'].astype(np.float32)
    return sample


def _pad(a, ph, pw, value):
    """Pad an HxW(xC) array bottom/right with a constant."""
    if a.dtype in (np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64):
        channels = a.shape[2] if a.ndim == 3 else 1
        if a.ndim == 2 or channels in (3, 4):  # cv2 would drop a trailing axis of 1
            return cv2.copyMakeBorder(a, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(value,) * channels)
    return np.pad(a, ((0, ph), (0, pw)) + ((0, 0),) * (a.ndim - 2), constant_values=value)


def pad_sample(sample, h, w, pad_val, seg_pad_val):
    """Pad bottom/right to at least (h, w): image with ``pad_val``, label with ``seg_pad_val``.
    A uint8 image padded with a fractional value (PaddleSeg's 127.5) becomes float32 first."""
    img = sample['img']
    ph, pw = max(h - img.shape[0], 0), max(w - img.shape[1], 0)
    if ph or pw:
        sample.setdefault('valid_shape', img.shape[:2])  # the image's part, for evaluation
        if img.dtype == np.uint8 and not float(pad_val).is_integer():
            img = img.astype(np.float32)
        sample['img'] = _pad(img, ph, pw, pad_val)
        if sample.get('label') is not None:
            sample['label'] = _pad(sample['label'], ph, pw, seg_pad_val)
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


def class_counts(label, ignore_index):
    """Pixel counts of the classes present in ``label``, the ignore index left out (mmseg's
    ``np.unique(..., return_counts=True)`` without sorting: a histogram for uint8 labels)."""
    if label.dtype == np.uint8:
        hist = cv2.calcHist([np.ascontiguousarray(label)], [0], None, [256], [0, 256]).ravel().astype(np.int64)
        if 0 <= ignore_index < 256:
            hist[ignore_index] = 0
        return hist[hist > 0]
    classes, cnt = np.unique(label, return_counts=True)
    return cnt[classes != ignore_index]


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
            cnt = class_counts(label[y1:y2, x1:x2], ignore_index)
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
    [min, max] when ``scale_step_size`` is 0); new size ``round(factor * side)``; in float32
    as PaddleSeg."""

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
        return resize_sample(as_float32(sample), int(round(f * w)), int(round(f * h)))


@TRANSFORMS.register()
class ResizeByShort:
    """PaddleSeg ``ResizeByShort``: short side to ``short_size`` (lowered so that the long
    side stays within ``max_size`` when ``max_size > 0``); sides ``round(side * scale)``; in
    float32 as PaddleSeg."""

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
        return resize_sample(as_float32(sample), int(round(w * scale)), int(round(h * scale)))


def short_side_size(w, h, size, max_size=-1):
    """torchvision ``resize(img, size)`` with an int ``size``: the short side becomes ``size``,
    the long side ``int(size * long / short)``; ``max_size > 0`` caps the long side (the short
    side then ``int(max_size * size / long)``). Returns (w, h)."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    if max_size > 0 and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    return (new_short, new_long) if w <= h else (new_long, new_short)


@TRANSFORMS.register()
class RandomResizeShortSide:
    """RegSeg's ``RandomResize(min_size, max_size)`` (``transforms.py``): the SHORT side is
    drawn uniformly from the integers in ``short_range`` (inclusive; Cityscapes' short side is
    1024, so 400-1600 is 0.39x-1.56x) and the long side becomes ``int(short * long / old_short)``
    (torchvision ``resize(img, size)``). ``max_size > 0`` caps the long side as torchvision's
    ``max_size`` does. ``backend: pil`` (default) resizes as torchvision does RegSeg's PIL
    images; ``cv2`` with OpenCV."""

    def __init__(self, short_range=(400, 1600), max_size=-1, backend='pil'):
        lo, hi = _range('RandomResizeShortSide', 'short_range', short_range)
        if not (float(lo).is_integer() and float(hi).is_integer()):
            raise _bad('RandomResizeShortSide', 'short_range', 'a list of 2 positive integers', short_range)
        _number('RandomResizeShortSide', 'max_size', max_size)
        self.short_range = (int(lo), int(hi))
        self.max_size = int(max_size)
        self.backend = _check_backend('RandomResizeShortSide', backend)

    def __call__(self, sample):
        size = random.randint(*self.short_range)
        h, w = sample['img'].shape[:2]
        return resize_sample(sample, *short_side_size(w, h, size, self.max_size), self.backend)


@TRANSFORMS.register()
class ResizeShortSide:
    """RegSeg's ``ValResize``: torchvision ``resize(img, short_size)`` (see
    ``short_side_size``), PIL bilinear by default. RegSeg resizes the label of a validation
    image the same way and scores there; here the label stays at its size and the logits are
    resized back to it, as for every other dataset."""

    def __init__(self, short_size=1024, max_size=-1, backend='pil'):
        _number('ResizeShortSide', 'short_size', short_size, minimum=1)
        _number('ResizeShortSide', 'max_size', max_size)
        self.short_size = int(short_size)
        self.max_size = int(max_size)
        self.backend = _check_backend('ResizeShortSide', backend)

    def __call__(self, sample):
        h, w = sample['img'].shape[:2]
        return resize_sample(sample, *short_side_size(w, h, self.short_size, self.max_size), self.backend)


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
    offset. ``category_max_ratio`` as in PaddleSeg 2.8 (1.0 = off). In float32 as PaddleSeg."""

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
            return as_float32(sample)
        sample = pad_sample(as_float32(sample), crop_h, crop_w, self.im_padding_value, self.label_padding_value)
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
            sample['img'] = _flip_lr(sample['img'])
            label = sample.get('label')
            if label is not None:
                label = _flip_lr(label)
                if self.swap_pairs:
                    flipped = label.copy()
                    for a, b in self.swap_pairs:
                        flipped[label == a] = b
                        flipped[label == b] = a
                    label = flipped
                sample['label'] = label
        return sample


def _flip_lr(a):
    """Left-right flip into a new contiguous array (OpenCV's flip where it takes the dtype)."""
    if a.dtype in (np.uint8, np.uint16, np.int16, np.int32, np.float32, np.float64) and (
            a.ndim == 2 or a.shape[2] in (3, 4)):
        return cv2.flip(a, 1)
    return np.ascontiguousarray(a[:, ::-1])


# -- photometric -------------------------------------------------------------------


def _convert_lut(alpha=1.0, beta=0.0):
    """mmseg ``PhotoMetricDistortion.convert`` (``float32(v) * alpha + beta``, clipped to
    [0, 255], truncated to uint8) of each of the 256 values: applied with ``cv2.LUT`` it gives
    the same bytes as converting the whole image, for a fraction of the work."""
    return np.clip(np.arange(256, dtype=np.float32) * alpha + beta, 0, 255).astype(np.uint8)


@TRANSFORMS.register()
class PhotoMetricDistortion:
    """mmseg ``PhotoMetricDistortion``; each step happens with probability 0.5:
    brightness (+U(-delta, delta)), contrast (xU(range)) either second or last (random mode),
    saturation (HSV S x U(range)), hue (H + randint(-delta, delta) mod 180), HSV via OpenCV
    on uint8 values, each step clipping and truncating to uint8 as mmseg's ``convert`` does
    (through lookup tables). The label is untouched. Our images are RGB, so RGB<->HSV is used
    where mmseg uses BGR<->HSV on BGR (the same HSV values and pixels). Works on uint8 and
    returns uint8, as in mmseg; a float image is rounded to uint8 first."""

    def __init__(self, brightness_delta: float = 32, contrast_range=(0.5, 1.5), saturation_range=(0.5, 1.5),
                 hue_delta=18):
        name = 'PhotoMetricDistortion'
        self.brightness_delta = float(_number(name, 'brightness_delta', brightness_delta, minimum=0))
        self.contrast_range = _range(name, 'contrast_range', contrast_range, positive=False)
        self.saturation_range = _range(name, 'saturation_range', saturation_range, positive=False)
        self.hue_delta = int(_number(name, 'hue_delta', hue_delta, minimum=0, maximum=180))

    def _contrast(self, img):
        if np.random.randint(2):
            img = cv2.LUT(img, _convert_lut(alpha=np.random.uniform(*self.contrast_range)))
        return img

    @staticmethod
    def _hsv_step(img, channel, lut):
        """RGB -> HSV, one channel through ``lut``, -> RGB."""
        tables = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
        tables[:, channel] = lut
        hsv = cv2.LUT(cv2.cvtColor(img, cv2.COLOR_RGB2HSV), np.ascontiguousarray(tables.reshape(1, 256, 3)))
        return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)

    def __call__(self, sample):
        img = sample['img']
        if img.dtype != np.uint8:
            img = _to_uint8(img)
        if np.random.randint(2):
            img = cv2.LUT(img, _convert_lut(beta=np.random.uniform(-self.brightness_delta, self.brightness_delta)))
        mode = np.random.randint(2)
        if mode == 1:
            img = self._contrast(img)
        if np.random.randint(2):
            img = self._hsv_step(img, 1, _convert_lut(alpha=np.random.uniform(*self.saturation_range)))
        if np.random.randint(2):
            shift = np.random.randint(-self.hue_delta, self.hue_delta) if self.hue_delta else 0
            img = self._hsv_step(img, 0, ((np.arange(256) + shift) % 180).astype(np.uint8))
        if mode == 0:
            img = self._contrast(img)
        sample['img'] = img
        return sample


@TRANSFORMS.register()
class RandomDistort:
    """PaddleSeg ``RandomDistort``: brightness, contrast, saturation, sharpness and hue, in a
    random order, each with its probability and a factor ``U(1 - range, 1 + range)`` (hue: a
    shift ``U(-hue_range, hue_range)`` on PIL's 0-255 hue). PIL ``ImageEnhance`` on the uint8
    image (truncated from PaddleSeg's float32 as PaddleSeg does) and float32 out. The label is
    untouched."""

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
    """``(img - mean) / std`` per RGB channel, both in 0-255 units; the image becomes float32
    here. The defaults are PaddleSeg's 0.5/0.5 (-> [-1, 1]); mmseg configs use mean
    [123.675, 116.28, 103.53], std [58.395, 57.12, 57.375].

    A uint8 image goes through a 256-entry table per channel holding ``(v - mean) / std`` in
    float32: one pass, and the same float32 values as computing it pixel by pixel (as mmseg's
    data preprocessor does, in float32)."""

    def __init__(self, mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5)):
        for k, v in (('mean', mean), ('std', std)):
            if not (isinstance(v, (list, tuple)) and len(v) == 3 and all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
                raise _bad('Normalize', k, 'a list of 3 numbers (RGB, 0-255 units)', v)
        if any(s <= 0 for s in std):
            raise _bad('Normalize', 'std', 'positive values', std)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        table = (np.arange(256, dtype=np.float32)[:, None] - self.mean) / self.std
        self._tables = [np.ascontiguousarray(table[:, c]) for c in range(3)]

    def normalize(self, img):
        """HxWx3 RGB (uint8 or float, 0-255) -> normalized float32 HxWx3.

        From uint8 the result is an HxWx3 view of a CHW array (each channel's plane through its
        table), so that the CHW network input needs no further copy."""
        if img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3:
            out = np.empty((3,) + img.shape[:2], np.float32)
            for c, plane in enumerate(cv2.split(img)):
                cv2.LUT(plane, self._tables[c], dst=out[c])
            return out.transpose(1, 2, 0)
        return (img.astype(np.float32) - self.mean) / self.std

    def __call__(self, sample):
        sample['img'] = self.normalize(sample['img'])
        return sample


def find_normalize(transforms):
    """The last ``Normalize`` of a transform list (a ``Compose`` or a list), or None."""
    found = None
    for t in getattr(transforms, 'transforms', transforms) or []:
        if isinstance(t, Normalize):
            found = t
    return found
