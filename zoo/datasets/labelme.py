"""labelme JSON annotations -> single-channel class-id PNGs, following labelme's own conversion rules.

The rules (labelme 7.x: ``labelme/_utils/shape.py`` ``shape_to_mask`` / ``shapes_to_label``,
``labelme/_label_file.py`` and ``examples/semantic_segmentation/labelme2voc.py``), checked
against labelme's own functions by ``tests/manifests/labelme_rules.py``:

* Class list: one name per line; the line index is the class id. A first line ``__ignore__``
  (labelme's convention) is the ignore value and is not a class: the ids then start at the next
  line. Pixels no shape covers get id 0, so the first class is the background (labelme names it
  ``_background_``). A shape label not in the list is an error naming the file and the label.
* Shapes are drawn in file order, a later shape over an earlier one, with Pillow's ``ImageDraw``
  filling and outlining each shape as labelme does: ``polygon`` (3+ points; no ``shape_type`` means
  polygon) and ``oriented_rectangle`` (4 points) as polygons; ``rectangle`` from two corners (any
  order, both edges included); ``circle`` from the centre and a point on the circle; ``line`` /
  ``linestrip`` 10 px wide; ``point`` a disc of radius 5; ``mask`` a base64 PNG patch placed at
  the rounded first point.
* The image: ``imageData`` (base64 of the image file) when present, else ``imagePath`` relative
  to the JSON file (Windows separators accepted). ``imageHeight``/``imageWidth`` must match it.

What differs from ``labelme2voc.py``, on purpose: the label PNG is single-channel 8-bit ids
(labelme writes a palette PNG, which OpenCV and so the training loader read as colours); the
ignore value is the dataset's ``ignore_index`` (labelme: -1 saved as 255); the image keeps its
own format (labelme2voc names every image ``.jpg``). The tool writes a palette preview beside.
"""
import base64
import io
import math
import os
import shutil

import numpy as np

from ..utils.errors import DataError

IGNORE_NAME = '__ignore__'
LINE_WIDTH = 10   # labelme's shape_to_mask defaults
POINT_SIZE = 5
POINTS_REQUIRED = {'circle': 2, 'rectangle': 2, 'line': 2, 'point': 1, 'oriented_rectangle': 4, 'mask': 2}
SHAPE_TYPES = ('polygon', 'rectangle', 'circle', 'line', 'linestrip', 'point', 'oriented_rectangle', 'mask')


def read_class_list(path):
    """``(class_names, has_ignore)`` from a labelme ``labels.txt`` (one name per line)."""
    try:
        with open(path, 'r', encoding='utf-8') as f:
            names = [ln.strip() for ln in f if ln.strip()]
    except OSError as e:
        raise DataError(f'class list {path!r} cannot be read ({e.strerror})') from None
    has_ignore = bool(names) and names[0] == IGNORE_NAME
    names = names[1:] if has_ignore else names
    if not names:
        raise DataError(f'class list {path!r} has no class names (one per line, the background first)')
    if IGNORE_NAME in names:
        raise DataError(f'class list {path!r}: {IGNORE_NAME} may only be the first line')
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f'class list {path!r} repeats {dup[0]!r}')
    return names, has_ignore


def _draw(shape_type, points, height, width, mask_png=None, where=''):
    """Boolean ``height x width`` mask of one shape (labelme's shape_to_mask rules)."""
    from PIL import Image, ImageDraw
    need = POINTS_REQUIRED.get(shape_type)
    if need is not None and len(points) != need:
        raise DataError(f'{where}: a {shape_type} needs {need} point(s), got {len(points)}')
    if shape_type == 'mask':
        if not isinstance(mask_png, str):
            raise DataError(f'{where}: a mask shape needs "mask" (a base64 PNG)')
        patch = np.asarray(_decode_image(base64.b64decode(mask_png), where)).astype(bool)
        if patch.ndim == 3:
            patch = patch.any(axis=2)
        pts = np.asarray(points, dtype=np.float64)
        (x1, y1), (x2, y2) = np.round(pts).astype(int)
        if np.array_equal(pts, np.trunc(pts)):  # integer corners: the extent they give (labelme's rule)
            ph, pw = y2 - y1 + 1, x2 - x1 + 1
        else:
            ph, pw = patch.shape
        out = np.zeros((height, width), dtype=bool)
        ys, ye, xs, xe = max(y1, 0), min(y1 + ph, height), max(x1, 0), min(x1 + pw, width)
        if ys < ye and xs < xe:
            out[ys:ye, xs:xe] = patch[ys - y1:ye - y1, xs - x1:xe - x1]
        return out
    canvas = Image.new('L', (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    xy = [(float(x), float(y)) for x, y in points]
    if shape_type == 'circle':
        (cx, cy), (px, py) = xy
        r = math.hypot(cx - px, cy - py)
        draw.ellipse(((cx - r, cy - r), (cx + r, cy + r)), outline=1, fill=1)
    elif shape_type == 'rectangle':
        (x0, y0), (x1, y1) = xy
        draw.rectangle(((min(x0, x1), min(y0, y1)), (max(x0, x1), max(y0, y1))), outline=1, fill=1)
    elif shape_type == 'line':
        draw.line(xy, fill=1, width=LINE_WIDTH)
    elif shape_type == 'linestrip':
        draw.line(xy, fill=1, width=LINE_WIDTH, joint='curve')
    elif shape_type == 'point':
        (cx, cy), = xy
        draw.ellipse(((cx - POINT_SIZE, cy - POINT_SIZE), (cx + POINT_SIZE, cy + POINT_SIZE)), outline=1, fill=1)
    else:  # polygon, oriented_rectangle
        if len(xy) < 3:
            raise DataError(f'{where}: a polygon needs 3 or more points, got {len(xy)}')
        draw.polygon(xy, outline=1, fill=1)
    return np.asarray(canvas, dtype=bool)


def _decode_image(data, where):
    from PIL import Image, ImageOps
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
    except Exception as e:  # noqa: BLE001  (Pillow raises many types for bad bytes)
        raise DataError(f'{where}: the image cannot be decoded ({e})') from None
    return ImageOps.exif_transpose(im)  # OpenCV's imread applies the EXIF orientation too


def shapes_to_label(shapes, height, width, class_ids, ignore_index=255, where='annotation'):
    """``height x width`` uint8 class ids from labelme shapes (later shapes on top); 0 where no
    shape is. ``class_ids``: label name -> id (``ignore_index`` for ``__ignore__``)."""
    if not isinstance(shapes, list):
        raise DataError(f'{where}: "shapes" must be a list')
    unknown = sorted({str(s.get('label')) for s in shapes if isinstance(s, dict)} - set(class_ids))
    if unknown:
        known = ', '.join(n for n in class_ids if n != IGNORE_NAME)
        raise DataError(f'{where}: label(s) {", ".join(map(repr, unknown))} not in the class list ({known}); '
                        'add them to the labels file or fix the annotation')
    label = np.zeros((height, width), dtype=np.uint8)
    for k, shape in enumerate(shapes):
        if not isinstance(shape, dict) or 'points' not in shape:
            raise DataError(f'{where}: shapes[{k}] is not a labelme shape (label, points, shape_type)')
        shape_type = shape.get('shape_type') or 'polygon'
        if shape_type not in SHAPE_TYPES:
            raise DataError(f'{where}: shapes[{k}] has shape_type {shape_type!r} (expected one of '
                            f'{", ".join(SHAPE_TYPES)})')
        try:
            points = [(float(p[0]), float(p[1])) for p in shape['points']]
        except (TypeError, ValueError, IndexError):
            raise DataError(f'{where}: shapes[{k}].points must be [x, y] pairs') from None
        mask = _draw(shape_type, points, height, width, shape.get('mask'), f'{where}: shapes[{k}]')
        label[mask] = class_ids[shape['label']]
    return label


def read_annotation(json_path):
    """``(annotation dict, image bytes, image file name)`` of a labelme JSON file."""
    from .prepare.common import read_json
    ann = read_json(json_path, 'labelme')
    if not isinstance(ann, dict) or 'shapes' not in ann:
        raise DataError(f'{json_path!r} is not a labelme annotation (no "shapes")')
    rel = str(ann.get('imagePath') or '').replace('\\', '/')
    if ann.get('imageData'):
        try:
            data = base64.b64decode(ann['imageData'], validate=False)
        except (ValueError, TypeError):
            raise DataError(f'{json_path!r}: imageData is not base64') from None
        name = os.path.basename(rel) if rel else None
    else:
        if not rel:
            raise DataError(f'{json_path!r}: neither imageData nor imagePath is set')
        img_path = os.path.join(os.path.dirname(os.path.abspath(json_path)), rel)
        if not os.path.isfile(img_path):
            raise DataError(f'{json_path!r}: its image {img_path!r} (imagePath) does not exist and imageData is empty')
        with open(img_path, 'rb') as f:
            data = f.read()
        name = os.path.basename(rel)
    return ann, data, name


def _image_ext(im):
    return {'JPEG': '.jpg', 'PNG': '.png', 'BMP': '.bmp', 'TIFF': '.tif', 'WEBP': '.webp'}.get(im.format, '.png')


def convert_annotation(json_path, out_dir, class_ids, ignore_index=255, preview=None):
    """Convert one labelme JSON: ``out_dir/images/<stem>.<ext>`` (the image file's own bytes) and
    ``labels/<stem>.png`` (class ids); ``preview(path, label)`` writes ``pseudo_color/<stem>.png``.
    Returns ``(image_path, label_path)``."""
    ann, data, name = read_annotation(json_path)
    im = _decode_image(data, repr(json_path))
    width, height = im.size
    for key, actual in (('imageHeight', height), ('imageWidth', width)):
        declared = ann.get(key)
        if declared is not None and declared != actual:
            raise DataError(f'{json_path!r}: {key} is {declared} but the image is {width}x{height} (W x H)')
    label = shapes_to_label(ann['shapes'], height, width, class_ids, ignore_index, repr(json_path))
    stem = os.path.splitext(os.path.basename(json_path))[0]
    from PIL import Image
    ext = os.path.splitext(name)[1].lower() if name and os.path.splitext(name)[1] else _image_ext(Image.open(io.BytesIO(data)))
    paths = {k: os.path.join(out_dir, k, stem + e) for k, e in (('images', ext), ('labels', '.png'),
                                                                  ('pseudo_color', '.png'))}
    for k in ('images', 'labels') + (('pseudo_color',) if preview else ()):
        os.makedirs(os.path.dirname(paths[k]), exist_ok=True)
    with open(paths['images'], 'wb') as f:
        f.write(data)
    Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8)).save(paths['labels'])  # 8-bit single channel
    if preview is not None:
        preview(paths['pseudo_color'], label)
    return paths['images'], paths['labels']


def class_ids_from_list(names, has_ignore, ignore_index=255):
    ids = {n: i for i, n in enumerate(names)}
    if has_ignore:
        ids[IGNORE_NAME] = ignore_index
    if len(names) > 255 or (len(names) > ignore_index >= 0):
        raise DataError(f'{len(names)} classes do not fit 8-bit labels with ignore index {ignore_index}')
    return ids


def convert_folder(json_dir, out_dir, class_names, has_ignore=False, ignore_index=255, nproc=1, clean=False,
                   preview=None):
    """Convert every ``*.json`` of ``json_dir``; write ``out_dir/labels.txt`` (class names). Returns the
    list of ``(image_path, label_path)``. ``preview``: a picklable ``(path, label)`` writer of the
    colour previews (``tools/data/labelme2seg.py`` passes the palette PNG writer of zoo.engine.visual)."""
    from .prepare.common import parallel_map
    if not os.path.isdir(json_dir):
        raise DataError(f'labelme folder {json_dir!r} does not exist')
    files = sorted(os.path.join(json_dir, f) for f in os.listdir(json_dir) if f.lower().endswith('.json'))
    if not files:
        raise DataError(f'no labelme *.json files in {json_dir!r}')
    class_ids = class_ids_from_list(class_names, has_ignore, ignore_index)
    if clean:
        for sub in ('images', 'labels', 'pseudo_color'):
            shutil.rmtree(os.path.join(out_dir, sub), ignore_errors=True)
    os.makedirs(out_dir, exist_ok=True)
    results = parallel_map(_Converter(out_dir, class_ids, ignore_index, preview), files, nproc)
    with open(os.path.join(out_dir, 'labels.txt'), 'w', encoding='utf-8') as f:
        f.writelines(f'{n}\n' for n in class_names)
    return results


class _Converter:
    """A picklable ``convert_annotation`` with its options bound (for the process pool)."""

    def __init__(self, out_dir, class_ids, ignore_index, preview):
        self.out_dir, self.class_ids, self.ignore_index, self.preview = out_dir, class_ids, ignore_index, preview

    def __call__(self, json_path):
        return convert_annotation(json_path, self.out_dir, self.class_ids, self.ignore_index, self.preview)
