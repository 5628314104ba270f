"""Palettes and colored masks for predictions and VisualDL images.

The palette is the dataset's ``PALETTE`` when it has one, else a deterministic generated one
(the PASCAL VOC bit-interleaving scheme that PaddleSeg also uses, so class 0 is black and
colors are distinct). Ignored and out-of-range pixels are drawn black.
"""
import numpy as np

from ..datasets.prepare.voc import voc_palette
from ..utils.errors import ConfigError


def generate_palette(num_classes):
    """``[num_classes, 3]`` uint8: the PASCAL VOC bit-interleaved color map."""
    return voc_palette(num_classes)


def get_palette(num_classes, dataset=None, custom_color=None):
    """RGB palette ``[num_classes, 3]`` uint8.

    ``custom_color``: a flat list ``r g b r g b ...`` (PaddleSeg's ``--custom_color``); classes it
    does not cover take the generated colors. Otherwise the dataset's ``PALETTE``, if any.
    """
    pal = generate_palette(num_classes)
    given = None
    if custom_color is not None:
        vals = list(custom_color)
        if not vals or len(vals) % 3 or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in vals):
            raise ConfigError(f'--custom_color: expected r g b triples of integers in 0..255, got {vals}')
        given = np.asarray(vals, dtype=np.uint8).reshape(-1, 3)
    elif dataset is not None and getattr(dataset, 'PALETTE', None) is not None:
        given = np.asarray(dataset.PALETTE, dtype=np.uint8).reshape(-1, 3)
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


def class_names_of(dataset, num_classes):
    """The dataset's class names (``dataset.class_names``, else its ``CLASSES``) when they fit
    ``num_classes``, else ``'0'``, ``'1'``, ..."""
    for attr in ('class_names', 'CLASSES'):
        names = getattr(dataset, attr, None)
        if names is not None and len(names) == num_classes:
            return [str(n) for n in names]
    return [str(i) for i in range(num_classes)]


# -- labelled panels for VisualDL and the evaluation folder ------------------------------------
PANEL_MIN_HEIGHT = 256   # small validation images are enlarged (integer factor) up to this height
PANEL_MAX_WIDTH = 1536   # the three panels side by side; large images are shrunk to fit
_FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX
_TITLE_H = 26
_TEXT = (30, 30, 30)
_BG = (255, 255, 255)


def _text(img, text, org, scale=0.5, color=_TEXT):
    import cv2
    cv2.putText(img, text, org, _FONT, scale, color, 1, cv2.LINE_AA)


def _text_width(text, scale=0.5):
    import cv2
    return cv2.getTextSize(text, _FONT, scale, 1)[0][0]


def _panel_scale(h, w):
    """Enlarge by an integer factor up to PANEL_MIN_HEIGHT; shrink if 3 panels exceed PANEL_MAX_WIDTH."""
    s = max(1, PANEL_MIN_HEIGHT // max(h, 1))
    if 3 * w * s > PANEL_MAX_WIDTH:
        s = PANEL_MAX_WIDTH / (3.0 * w)
    return s


def legend_strip(class_ids, class_names, palette, width, ignored=False):
    """Colour swatches with class names, wrapped over as many rows as ``width`` needs."""
    items = [(palette[c], str(class_names[c])) for c in class_ids]
    if ignored:
        items.append(((0, 0, 0), 'ignored'))
    rows, row, x = [], [], 8
    for color, name in items:
        w = 18 + _text_width(name) + 16
        if row and x + w > width:
            rows.append(row)
            row, x = [], 8
        row.append((x, color, name))
        x += w
    if row:
        rows.append(row)
    strip = np.full((8 + 22 * len(rows), width, 3), _BG, dtype=np.uint8)
    for r, row in enumerate(rows):
        y = 6 + 22 * r
        for x, color, name in row:
            strip[y + 2:y + 16, x:x + 14] = color
            strip[y + 2:y + 16, x:x + 14][[0, -1]] = 90  # a thin border: white classes stay visible
            strip[y + 2:y + 16, [x, x + 13]] = 90
            _text(strip, name, (x + 18, y + 14))
    return strip


def labelled_panel(rgb, label, pred, palette, class_names, ignore_index=255, max_legend_classes=20):
    """``input | ground truth | prediction`` with a title over each part and a legend strip below.

    The legend lists every class when there are at most ``max_legend_classes``, else only the
    classes present in this image's ground truth or prediction (most pixels first).
    """
    import cv2
    h, w = label.shape[-2:]
    rgb = np.asarray(rgb, dtype=np.uint8)
    if rgb.shape[:2] != (h, w):
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    s = _panel_scale(h, w)
    size = (int(round(w * s)), int(round(h * s)))
    parts = [cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR if s < 1 else cv2.INTER_NEAREST),
             cv2.resize(colorize(label, palette, ignore_index), size, interpolation=cv2.INTER_NEAREST),
             cv2.resize(colorize(pred, palette, ignore_index), size, interpolation=cv2.INTER_NEAREST)]
    gap = 4
    pw, ph = size
    width = 3 * pw + 2 * gap
    top = np.full((_TITLE_H + ph, width, 3), _BG, dtype=np.uint8)
    for k, (part, title) in enumerate(zip(parts, ('input', 'ground truth', 'prediction'))):
        x = k * (pw + gap)
        top[_TITLE_H:, x:x + pw] = part
        _text(top, title, (x + max(0, (pw - _text_width(title, 0.6)) // 2), 18), scale=0.6)
    n = len(palette)
    valid_l = (label >= 0) & (label < n) & (label != ignore_index)
    if n <= max_legend_classes:
        ids = list(range(n))
    else:
        counts = np.bincount(np.concatenate([label[valid_l].ravel(), pred[(pred >= 0) & (pred < n)].ravel()]),
                             minlength=n)
        ids = [int(c) for c in np.argsort(-counts, kind='stable') if counts[c] > 0]
    legend = legend_strip(ids, class_names, palette, width, ignored=bool((~valid_l).any()))
    return np.concatenate([top, legend], axis=0)
