"""The generator of the demo dataset (``DemoShapes``, Cityscapes layout) and its analysis.

Every tool can be tried end to end without downloading anything:
``python tools/make_demo_data.py --root data/demo`` writes
``leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png`` and
``gtFine/{train,val}/<city>/<name>_gtFine_labelTrainIds.png``.

What is in an image, and why:

* 6 classes: background plus 5 shapes (disc, rectangle, triangle, ring, cross). A shape has
  a class-typical texture (solid, checker, stripes, dots; disc and ring share the solid one)
  but 3 % of objects take a random one.
* Each shape class has a typical hue, jittered, and 5 % of objects take any
  hue; the unlabelled clutter uses the same colors. The best per-pixel color rule learnt on
  train scores about 0.73 val mIoU (:func:`color_only_miou`): beyond that, the model has to
  look at shape and texture over a neighbourhood.
* Backgrounds are low-saturation gradients plus low-frequency color noise plus unlabelled
  clutter (thin lines, small dots, small blobs) in object colors; thin lines also cross objects.
* 3-6 objects per image at varied scale (radius 18-38 % of the short side, so an object is
  several cells wide at output stride 8); later objects occlude earlier ones and the label
  follows. A ring's hole shows what lies beneath.
* An ignore (255) frame and, in most images, an ignored "hood" at the bottom, as in
  Cityscapes.

Each image is drawn from its own generator seeded by (seed, split, index), so the bytes are
deterministic and a val image does not depend on how many train images were made.
"""
import json
import os
import time

import cv2
import numpy as np

from ...utils.errors import DataError
from ..meta import DEMO_CLASSES
from .common import read_gray_label

IGNORE = 255

# Each shape class has a typical hue (evenly spaced, 72 degrees apart) drawn with a jitter wide
# enough that neighbouring classes overlap, and 10 % of objects take any hue; clutter uses the
# same saturated colors, so color says something but never enough.
_HUE_JITTER = 15.0
_OFF_HUE = 0.05
_TEXTURES = ('solid', 'checker', 'stripes', 'dots', 'speckle', 'grid')
# class id -> its typical texture
_CLASS_TEXTURE = {1: 'solid', 2: 'checker', 3: 'stripes', 4: 'solid', 5: 'dots'}
_NUM_SHAPES = len(_CLASS_TEXTURE)
_RANDOM_TEXTURE = 0.03
_SPLITS = {'train': (0, ('aachen', 'bremen', 'cologne')), 'val': (1, ('frankfurt', 'lindau'))}


# -- shapes ------------------------------------------------------------------------

def _rot(points, angle):
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]], dtype=np.float64)


def _draw_shape(mask, cls, cx, cy, r, angle, rng):
    """Draw class ``cls``'s shape (filled, value 1) into ``mask``; centre (cx, cy), size r."""
    center = np.array([cx, cy])

    def poly(points):
        pts = np.round(_rot(points, angle) + center).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1)

    if cls == 1:  # disc
        cv2.circle(mask, (int(round(cx)), int(round(cy))), int(round(r)), 1, -1)
    elif cls == 2:  # rectangle, aspect 0.6-1
        a = rng.uniform(0.6, 1.0)
        w, h = r * 1.6, r * 1.6 * a
        poly(np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2 * 1.15)
    elif cls == 3:  # triangle
        t = np.deg2rad([90, 210, 330]) + rng.uniform(-0.15, 0.15, 3)
        poly(np.stack([np.cos(t), np.sin(t)], 1) * r * 1.35)
    elif cls == 4:  # ring
        cv2.circle(mask, (int(round(cx)), int(round(cy))), int(round(r)), 1, -1)
        cv2.circle(mask, (int(round(cx)), int(round(cy))), int(round(r * rng.uniform(0.3, 0.42))), 0, -1)
    elif cls == 5:  # cross
        L, T = r * 1.15, r * 0.38
        arm = np.array([[-L, -T], [L, -T], [L, T], [-L, T]])
        poly(arm)
        poly(arm[:, ::-1])
    return mask


# -- textures ----------------------------------------------------------------------

def _texture(kind, yy, xx, r, rng):
    """A 0-1 pattern over the grid (yy, xx) for blending two colors."""
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    period = max(4.0, r * rng.uniform(0.35, 0.55))
    if kind == 'solid':
        return np.zeros_like(xx) + 0.15 * rng.random(xx.shape, dtype=np.float32)
    if kind == 'checker':
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if kind == 'stripes':
        return (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    if kind == 'dots':
        p = max(5.0, period * 1.1)
        du, dv = (u % p) - p / 2, (v % p) - p / 2
        return (du * du + dv * dv < (p * 0.3) ** 2).astype(np.float32)
    if kind == 'speckle':
        return (rng.random(xx.shape, dtype=np.float32) > 0.55).astype(np.float32)
    # grid: crossing lines
    return ((u % period < period * 0.35) | (v % period < period * 0.35)).astype(np.float32)


def _jitter(rng, color, amount=25.0):
    return np.clip(color + rng.normal(0, amount, 3), 0, 255).astype(np.float32)


def _hsv_color(hue, sat, val):
    """RGB 0-255 float32 of a hue in degrees, saturation and value in 0-1."""
    hsv = np.array([[[hue % 360.0, sat, val]]], np.float32)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0] * 255.0


def _class_color(rng, cls):
    """A saturated color near class ``cls``'s hue (any hue for 5 % of the draws)."""
    if rng.random() < _OFF_HUE:
        hue = rng.uniform(0, 360)
    else:
        hue = (cls - 1) * 360.0 / _NUM_SHAPES + rng.normal(0, _HUE_JITTER)
    return _hsv_color(hue, rng.uniform(0.45, 1.0), rng.uniform(0.55, 1.0))


def _clutter_color(rng):
    return _class_color(rng, int(rng.integers(1, _NUM_SHAPES + 1)))


def _background_color(rng):
    return _hsv_color(rng.uniform(0, 360), rng.uniform(0.0, 0.35), rng.uniform(0.25, 0.9))


# -- one image ---------------------------------------------------------------------

def _background(rng, h, w, yy, xx):
    c0, c1 = _background_color(rng), _background_color(rng)
    angle = rng.uniform(0, 2 * np.pi)
    u = (xx * np.cos(angle) + yy * np.sin(angle))
    u = (u - u.min()) / max(float(np.ptp(u)), 1.0)
    img = c0 * (1 - u[..., None]) + c1 * u[..., None]
    gh, gw = rng.integers(2, 5), rng.integers(3, 7)
    blotch = rng.normal(0, 25, (gh, gw, 3)).astype(np.float32)
    img += cv2.resize(blotch, (w, h), interpolation=cv2.INTER_CUBIC)
    s = min(h, w)
    # unlabelled clutter: thin lines, small dots, small smooth blobs
    for _ in range(rng.integers(1, 4)):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, p0, p1, _clutter_color(rng).tolist(), int(rng.integers(1, 3)))
    for _ in range(rng.integers(2, 8)):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(img, c, int(rng.integers(1, max(2, s // 40) + 1)), _clutter_color(rng).tolist(), -1)
    for _ in range(rng.integers(0, 3)):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(s * rng.uniform(0.03, 0.06)), int(s * rng.uniform(0.02, 0.04)))
        cv2.ellipse(img, c, axes, float(rng.uniform(0, 180)), 0, 360, _clutter_color(rng).tolist(), -1)
    return img


def make_sample(rng, height, width):
    """One (image uint8 HxWx3 RGB, label uint8 HxW) pair."""
    h, w = height, width
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = _background(rng, h, w, yy, xx)
    label = np.zeros((h, w), np.uint8)
    s = min(h, w)
    mask = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(3, 7)):
        cls = int(rng.integers(1, _NUM_SHAPES + 1))
        r = s * rng.uniform(0.18, 0.38)
        cx, cy = rng.uniform(0.02 * w, 0.98 * w), rng.uniform(0.08 * h, 0.92 * h)
        mask[:] = 0
        _draw_shape(mask, cls, cx, cy, r, rng.uniform(0, 2 * np.pi), rng)
        x0, y0, bw, bh = cv2.boundingRect(mask)
        y1, x1 = y0 + bh, x0 + bw
        if bw == 0 or cv2.countNonZero(mask[y0:y1, x0:x1]) < 0.3 * r * r:  # mostly outside the image
            continue
        region = mask[y0:y1, x0:x1].astype(bool)
        under = img[y0:y1, x0:x1][region].mean(0)
        for _ in range(6):  # keep the object visible against what lies beneath it
            a = _class_color(rng, cls)
            if np.abs(a - under).sum() > 90:
                break
        b = a * rng.uniform(0.3, 0.55)
        kind = _CLASS_TEXTURE[cls] if rng.random() >= _RANDOM_TEXTURE else _TEXTURES[rng.integers(len(_TEXTURES))]
        t = _texture(kind, yy[y0:y1, x0:x1], xx[y0:y1, x0:x1], r, rng)[..., None]
        patch = img[y0:y1, x0:x1]
        patch[region] = (a * (1 - t) + b * t)[region]
        label[y0:y1, x0:x1][region] = cls
    for _ in range(rng.integers(0, 2)):  # thin unlabelled lines over everything
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(img, p0, p1, _clutter_color(rng).tolist(), 1)
    img *= rng.uniform(0.75, 1.2)  # global exposure
    img = cv2.GaussianBlur(img, (0, 0), 0.6)
    img += rng.standard_normal(img.shape, dtype=np.float32) * 4
    # ignored regions, as in Cityscapes: a thin frame and often an ego-vehicle "hood"
    frame = max(1, round(0.012 * h))
    label[:frame], label[-frame:], label[:, :frame], label[:, -frame:] = IGNORE, IGNORE, IGNORE, IGNORE
    if rng.random() < 0.7:
        hood = np.zeros((h, w), np.uint8)
        depth = int(h * rng.uniform(0.04, 0.1))
        cv2.ellipse(hood, (w // 2, h), (int(w * rng.uniform(0.45, 0.7)), 2 * depth), 0, 180, 360, 1, -1)
        img[hood.astype(bool)] = _jitter(rng, np.array([35, 35, 40], np.float32), 8)
        label[hood.astype(bool)] = IGNORE
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), label


# -- the dataset on disk -----------------------------------------------------------

def sample_paths(root, split, index):
    """Image and label path of sample ``index`` of ``split`` in the Cityscapes layout."""
    cities = _SPLITS[split][1]
    city = cities[index % len(cities)]
    name = f'{city}_{index:06d}_000019'
    return (os.path.join(root, 'leftImg8bit', split, city, f'{name}_leftImg8bit.png'),
            os.path.join(root, 'gtFine', split, city, f'{name}_gtFine_labelTrainIds.png'))


def _clear_previous_demo(root):
    """Remove the samples of an earlier demo at ``root`` (it has ``demo_info.json``), so a smaller
    run does not leave stale images behind; refuse a Cityscapes-layout folder that is not a demo."""
    files = [os.path.join(d, f) for top in ('leftImg8bit', 'gtFine') for split in _SPLITS
             for d, _, names in os.walk(os.path.join(root, top, split)) for f in names
             if f.endswith(('_leftImg8bit.png', '_gtFine_labelTrainIds.png'))]
    if not files:
        return
    if not os.path.isfile(os.path.join(root, 'demo_info.json')):
        raise DataError(f'demo dataset: {root!r} already holds {len(files)} Cityscapes-layout files and no '
                        'demo_info.json; give an empty or demo folder (the demo never mixes into a real dataset)')
    for f in files:
        os.remove(f)


def generate_demo_dataset(root, num_train=500, num_val=60, height=128, width=256, seed=0):
    """Write the demo dataset under ``root``; return a summary dict (counts, time, sizes)."""
    if height < 32 or width < 32:
        raise DataError(f'demo dataset: height and width must be >= 32, got {height}x{width}')
    if num_train < 1 or num_val < 1:
        raise DataError(f'demo dataset: num_train and num_val must be >= 1, got {num_train}, {num_val}')
    _clear_previous_demo(root)
    t0 = time.time()
    for split, n in (('train', num_train), ('val', num_val)):
        split_id = _SPLITS[split][0]
        for city in _SPLITS[split][1]:
            os.makedirs(os.path.join(root, 'leftImg8bit', split, city), exist_ok=True)
            os.makedirs(os.path.join(root, 'gtFine', split, city), exist_ok=True)
        for i in range(n):
            rng = np.random.default_rng([seed, split_id, i])
            img, label = make_sample(rng, height, width)
            img_path, label_path = sample_paths(root, split, i)
            if not cv2.imwrite(img_path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
                raise DataError(f'demo dataset: cannot write {img_path!r}')
            cv2.imwrite(label_path, label)
    info = dict(num_train=num_train, num_val=num_val, height=height, width=width, seed=seed,
                classes=list(DEMO_CLASSES), seconds=round(time.time() - t0, 2))
    with open(os.path.join(root, 'demo_info.json'), 'w', encoding='utf-8') as f:
        json.dump({k: v for k, v in info.items() if k != 'seconds'}, f, indent=1)
    return info


def _label_files(root, split):
    d = os.path.join(root, 'gtFine', split)
    if not os.path.isdir(d):
        raise DataError(f'demo dataset: folder {d!r} does not exist (run tools/make_demo_data.py)')
    out = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(d) for f in fs
                 if f.endswith('_gtFine_labelTrainIds.png'))
    if not out:
        raise DataError(f'demo dataset: no *_gtFine_labelTrainIds.png under {d!r}')
    return out


def class_pixel_counts(root, split='val', num_classes=len(DEMO_CLASSES)):
    """Pixels of each class (ignore excluded) over a split's labels."""
    counts = np.zeros(num_classes, np.int64)
    for p in _label_files(root, split):
        lab = read_gray_label(p, 'demo dataset')
        counts += np.bincount(lab[lab != IGNORE].ravel(), minlength=num_classes)[:num_classes]
    return counts


def majority_baseline(root, num_classes=len(DEMO_CLASSES)):
    """Class frequencies and the val mIoU of always predicting train's most frequent class.

    mIoU averages over the classes present in val (as the evaluator does); the predicted
    class's IoU is its share of the labelled pixels and every other class scores 0.
    """
    train = class_pixel_counts(root, 'train', num_classes)
    val = class_pixel_counts(root, 'val', num_classes)
    top = int(np.argmax(train))
    present = val > 0
    ious = np.zeros(num_classes)
    ious[top] = val[top] / val.sum()
    return dict(train_freq=(train / train.sum()).tolist(), val_freq=(val / val.sum()).tolist(),
                most_frequent_class=top, miou=float(ious[present].mean()))


def color_only_miou(root, num_classes=len(DEMO_CLASSES), bins=16):
    """Val mIoU of the best per-pixel color rule learnt on train (a 16^3 RGB histogram:
    each color bin predicts its most frequent train class). Shows color alone is not enough."""
    def pairs(split):
        for lab_path in _label_files(root, split):
            img_path = lab_path.replace(os.sep + 'gtFine' + os.sep, os.sep + 'leftImg8bit' + os.sep) \
                .replace('_gtFine_labelTrainIds.png', '_leftImg8bit.png')
            img = cv2.imread(img_path, cv2.IMREAD_COLOR)
            lab = read_gray_label(lab_path, 'demo dataset')
            keep = lab != IGNORE
            q = (img[keep].astype(np.int64) * bins) // 256
            yield (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2], lab[keep]

    table = np.zeros((bins ** 3, num_classes), np.int64)
    for code, lab in pairs('train'):
        np.add.at(table, (code, lab), 1)
    rule = table.argmax(1)
    conf = np.zeros((num_classes, num_classes), np.int64)
    for code, lab in pairs('val'):
        np.add.at(conf, (lab, rule[code]), 1)
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    present = conf.sum(1) > 0
    return float((inter[present] / np.maximum(union[present], 1)).mean())
