"""Palettes and colored masks for predictions and VisualDL images.

The palette is the dataset's ``palette`` (``PALETTE`` of a class) when it has one, else a
deterministic generated one (the PASCAL VOC bit-interleaving scheme that PaddleSeg also uses, so
class 0 is black and colors are distinct). Ignored and out-of-range pixels are drawn black.
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


def class_names_of(dataset, num_classes):
    """The dataset's class names (``dataset.class_names``, else its ``CLASSES``) when they fit
    ``num_classes``, else ``'0'``, ``'1'``, ..."""
    for attr in ('class_names', 'CLASSES'):
        names = getattr(dataset, attr, None)
        if names is not None and len(names) == num_classes:
            return [str(n) for n in names]
    return [str(i) for i in range(num_classes)]


# -- labelled panels for VisualDL and the evaluation folder ------------------------------------
# A 2 x 2 grid (input | ground truth / prediction | legend): VisualDL shows an image in a card about
# 1.5 times as wide as high, so a grid is drawn larger there than three parts in a row; the text
# is sized from the cell so it stays legible when the card shrinks the picture.
CELL_MIN_HEIGHT = 256   # small validation images are enlarged (integer factor) up to this height
CELL_MAX_WIDTH = 768    # large images are shrunk to this width per cell
GAP = 6
_FONT = 0  # cv2.FONT_HERSHEY_SIMPLEX
_TEXT = (30, 30, 30)
_BG = (255, 255, 255)


def _text(img, text, org, scale, color=_TEXT):
    import cv2
    cv2.putText(img, text, org, _FONT, scale, color, max(1, int(round(scale * 1.6))), cv2.LINE_AA)


def _text_size(text, scale):
    import cv2
    (w, h), _ = cv2.getTextSize(text, _FONT, scale, max(1, int(round(scale * 1.6))))
    return w, h


def cell_scale(h, w):
    """Enlarge by an integer factor up to CELL_MIN_HEIGHT; shrink to CELL_MAX_WIDTH if wider."""
    s = max(1, CELL_MIN_HEIGHT // max(h, 1))
    if w * s > CELL_MAX_WIDTH:
        s = CELL_MAX_WIDTH / float(w)
    return s


def _font_scale(cell_w):
    return float(np.clip(cell_w / 520.0, 0.5, 1.1))


def legend_cell(class_ids, class_names, palette, width, height, ignored=False, font=0.8):
    """Colour swatches and class names in columns filling a ``height`` x ``width`` cell; classes
    that do not fit are summarized as ``+N more``."""
    items = [(tuple(int(v) for v in palette[c]), str(class_names[c])) for c in class_ids]
    if ignored:
        items.append(((0, 0, 0), 'ignored'))
    cell = np.full((height, width, 3), _BG, dtype=np.uint8)
    _, th = _text_size('Ag', font)
    row_h = int(th * 1.9) + 2
    box = int(th * 1.2)
    rows = max(1, (height - 8) // row_h)
    col_w = max(_text_size(name, font)[0] for _, name in items) + box + int(th * 1.6) if items else width
    cols = max(1, width // max(col_w, 1))
    if len(items) > rows * cols:  # keep the last slot for the count of the rest
        shown, rest = items[:rows * cols - 1], len(items) - (rows * cols - 1)
    else:
        shown, rest = items, 0
    col_w = width // cols
    for k, (color, name) in enumerate(shown):
        c, r = divmod(k, rows)
        x, y = 8 + c * col_w, 6 + r * row_h
        cell[y:y + box, x:x + box] = color
        cell[y:y + box, x:x + box][[0, -1]] = 90  # thin border: white or black classes stay visible
        cell[y:y + box, [x, x + box - 1]] = 90
        _text(cell, name, (x + box + 6, y + box - max(1, box // 8)), font)
    if rest:
        c, r = divmod(len(shown), rows)
        _text(cell, f'+{rest} more', (8 + c * col_w, 6 + r * row_h + box - max(1, box // 8)), font)
    return cell


def labelled_panel(rgb, label, pred, palette, class_names, ignore_index=255, max_legend_classes=20):
    """A titled 2 x 2 grid: input | ground truth / prediction | class legend.

    The legend lists every class when there are at most ``max_legend_classes``, else only the
    classes present in this image's ground truth or prediction (most pixels first).
    """
    import cv2
    h, w = label.shape[-2:]
    rgb = np.asarray(rgb, dtype=np.uint8)
    if rgb.shape[:2] != (h, w):
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    s = cell_scale(h, w)
    cw, ch = int(round(w * s)), int(round(h * s))
    nearest = cv2.INTER_NEAREST
    parts = [cv2.resize(rgb, (cw, ch), interpolation=cv2.INTER_AREA if s < 1 else nearest),
             cv2.resize(colorize(label, palette, ignore_index), (cw, ch), interpolation=nearest),
             cv2.resize(colorize(pred, palette, ignore_index), (cw, ch), interpolation=nearest)]
    font = _font_scale(cw)
    title_h = _text_size('Ag', font)[1] * 2 + 4
    n = len(palette)
    valid_l = (label >= 0) & (label < n) & (label != ignore_index)
    if n <= max_legend_classes:
        ids = list(range(n))
    else:
        counts = np.bincount(np.concatenate([label[valid_l].ravel(), pred[(pred >= 0) & (pred < n)].ravel()]),
                             minlength=n)
        ids = [int(c) for c in np.argsort(-counts, kind='stable') if counts[c] > 0]
    parts.append(legend_cell(ids, class_names, palette, cw, ch, ignored=bool((~valid_l).any()), font=font * 0.65))
    titles = ('input', 'ground truth', 'prediction', 'classes')
    out = np.full((2 * (title_h + ch) + GAP, 2 * cw + GAP, 3), _BG, dtype=np.uint8)
    for k, (part, title) in enumerate(zip(parts, titles)):
        r, c = divmod(k, 2)
        y, x = r * (title_h + ch + GAP), c * (cw + GAP)
        out[y + title_h:y + title_h + ch, x:x + cw] = part
        tw, th = _text_size(title, font)
        _text(out, title, (x + max(0, (cw - tw) // 2), y + title_h - (title_h - th) // 2 - 2), font)
    return out
