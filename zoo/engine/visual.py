"""Palettes and colored masks for predictions and VisualDL images.

The palette is the dataset's ``palette`` (``PALETTE`` of a class) when it has one, else a deterministic generated one
(the PASCAL VOC bit-interleaving scheme that PaddleSeg also uses, so class 0 is black and
colors are distinct). Ignored and out-of-range pixels are drawn black.
"""
import numpy as np

from ..datasets.meta import voc_palette
from ..utils.errors import ConfigError


def generate_palette(num_classes):
    """``[num_classes, 3]`` uint8: the PASCAL VOC bit-interleaved color map."""
    return voc_palette(num_classes)


def get_palette(num_classes, dataset=None, custom_color=None):
    """RGB palette ``[num_classes, 3]`` uint8.

    ``custom_color``: a flat list ``r g b r g b ...`` (PaddleSeg's ``--custom_color``); classes it
    does not cover take the generated colors. Otherwise the dataset's ``palette`` (or the class's
    ``PALETTE``), if any.
    """
    pal = generate_palette(num_classes)
    given = None
    if custom_color is not None:
        vals = list(custom_color)
        if not vals or len(vals) % 3 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in vals):
            raise ConfigError(f'--custom_color: expected r g b triples of integers in 0..255, got {vals}')
        given = np.asarray(vals, dtype=np.uint8).reshape(-1, 3)
    elif dataset is not None and (getattr(dataset, 'palette', None) or getattr(dataset, 'PALETTE', None)):
        given = np.asarray(getattr(dataset, 'palette', None) or dataset.PALETTE, dtype=np.uint8).reshape(-1, 3)
    if given is not None:
        n = min(len(given), num_classes)
        pal[:n] = given[:n]
    return pal


def colorize(label, palette, ignore_index=255):
    """``HxW`` class ids -> ``HxWx3`` uint8 RGB; ignored / out-of-range pixels black."""
    label = np.asarray(label)
    palette = np.asarray(palette, dtype=np.uint8)
    valid = (label >= 0) & (label < len(palette)) & (label != ignore_index)
    out = np.zeros(label.shape + (3,), dtype=np.uint8)
    out[valid] = palette[label[valid]]
    return out


def overlay(img, color_mask, alpha=0.4):
    """Blend an RGB ``img`` (uint8 or 0-255 floats) with a colored mask: ``(1 - alpha) * img + alpha * mask``.

    PaddleSeg's ``added_prediction`` uses 0.6 image / 0.4 mask, hence the default.
    """
    img = np.clip(np.asarray(img, dtype=np.float32), 0, 255)
    mask = np.asarray(color_mask, dtype=np.float32)
    if img.shape != mask.shape:
        raise ValueError(f'image {img.shape} and mask {mask.shape} differ in shape')
    return np.clip((1.0 - alpha) * img + alpha * mask + 0.5, 0, 255).astype(np.uint8)


def denormalize(img_chw, transforms=None):
    """A network input ``3xHxW`` back to ``HxWx3`` uint8 RGB for display.

    Uses the ``mean``/``std`` of a Normalize transform among ``transforms`` if there is one; else
    stretches the values to 0..255.
    """
    img = np.asarray(img_chw, dtype=np.float32).transpose(1, 2, 0)
    norm = None
    for t in getattr(transforms, 'transforms', transforms) or []:
        if hasattr(t, 'mean') and hasattr(t, 'std'):
            norm = t
    if norm is not None:
        img = img * np.asarray(norm.std, np.float32) + np.asarray(norm.mean, np.float32)
    else:
        lo, hi = float(img.min()), float(img.max())
        img = (img - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(img)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def save_palette_png(path, label, palette, ignore_index=255):
    """Write a class-id mask as a palette PNG (PIL) or, without PIL, as an RGB PNG (cv2)."""
    label = np.asarray(label)
    try:
        from PIL import Image
    except ImportError:
        import cv2
        cv2.imwrite(path, colorize(label, palette, ignore_index)[:, :, ::-1])
        return
    pal = np.zeros((256, 3), dtype=np.uint8)
    n = min(len(palette), 256)
    pal[:n] = np.asarray(palette, dtype=np.uint8)[:n]
    ids = label.astype(np.int64)
    ids = np.where((ids < 0) | (ids > 255), ignore_index if 0 <= ignore_index <= 255 else 0, ids)
    ids = np.ascontiguousarray(ids.astype(np.uint8))
    im = Image.frombytes('P', (ids.shape[1], ids.shape[0]), ids.tobytes())
    im.putpalette(pal.reshape(-1).tolist())
    im.save(path)
