"""Cityscapes: ``*_gtFine_polygons.json`` -> ``*_gtFine_labelTrainIds.png``.

Follows cityscapesScripts' ``json2labelImg`` (trainIds encoding): the image starts as the
trainId of ``unlabeled`` (255); objects are drawn in file order, so a later polygon covers an
earlier one; objects flagged ``deleted`` are skipped; a label missing from the table whose
name ends in ``group`` (``cargroup``) falls back to its base label (``car``); labels with a
negative id (``license plate``) are not drawn. Polygons are filled with PIL's
``ImageDraw.polygon`` as the official script does, so the rasterization matches pixel for pixel.
"""
import glob
import os

import numpy as np

from ...utils.errors import DataError
from ..meta import CITYSCAPES_LABELS as LABELS
from .common import parallel_map, read_json, require_dir, write_label_png

NAME_TO_LABEL = {lab.name: lab for lab in LABELS}
ID_TO_TRAIN_ID = {lab.id: lab.train_id for lab in LABELS if lab.id >= 0}

SPLITS = ('train', 'val', 'test')
EXPECTED_TREE = ('<root>/gtFine/{train,val,test}/<city>/*_gtFine_polygons.json and '
                 '<root>/leftImg8bit/{train,val,test}/<city>/*_leftImg8bit.png '
                 '(gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip extracted into <root>)')


def resolve_label(name, json_path):
    """The table entry of an object's label, applying the ``<label>group`` fallback."""
    if name not in NAME_TO_LABEL and name.endswith('group'):
        name = name[:-len('group')]
    if name not in NAME_TO_LABEL:
        raise DataError(f'Cityscapes: {json_path!r} has an object with unknown label {name!r}')
    return NAME_TO_LABEL[name]


def polygons_to_train_ids(annotation, json_path='<json>'):
    """Rasterize one parsed ``*_gtFine_polygons.json`` to an HxW uint8 trainId map."""
    from PIL import Image, ImageDraw  # Pillow ships with paddlepaddle

    try:
        width, height = int(annotation['imgWidth']), int(annotation['imgHeight'])
        objects = annotation['objects']
    except (KeyError, TypeError, ValueError):
        raise DataError(f'Cityscapes: {json_path!r} is not a polygon annotation '
                        '(expected imgWidth, imgHeight and objects)') from None
    img = Image.new('L', (width, height), NAME_TO_LABEL['unlabeled'].train_id)
    drawer = ImageDraw.Draw(img)
    for obj in objects:
        if obj.get('deleted'):
            continue
        label = resolve_label(obj['label'], json_path)
        if label.id < 0:
            continue
        polygon = [(p[0], p[1]) for p in obj['polygon']]  # as given (ints in the official files)
        if len(polygon) < 2:
            continue
        drawer.polygon(polygon, fill=label.train_id)
    return np.asarray(img, dtype=np.uint8)


def convert_json(json_path):
    """Write ``<name>_gtFine_labelTrainIds.png`` next to ``<name>_gtFine_polygons.json``."""
    annotation = read_json(json_path, 'Cityscapes')
    out = json_path.replace('_gtFine_polygons.json', '_gtFine_labelTrainIds.png')
    write_label_png(out, polygons_to_train_ids(annotation, json_path))
    return out


def prepare_cityscapes(root, nproc=1, splits=SPLITS):
    """Convert every polygon file under ``<root>/gtFine``; return ``{split: count}``."""
    require_dir(root, 'Cityscapes', EXPECTED_TREE)
    gt_root = require_dir(os.path.join(root, 'gtFine'), 'Cityscapes', EXPECTED_TREE)
    require_dir(os.path.join(root, 'leftImg8bit'), 'Cityscapes', EXPECTED_TREE)
    counts = {}
    for split in splits:
        split_dir = os.path.join(gt_root, split)
        if split == 'test' and not os.path.isdir(split_dir):
            continue
        require_dir(split_dir, 'Cityscapes', EXPECTED_TREE)
        jsons = sorted(glob.glob(os.path.join(split_dir, '*', '*_gtFine_polygons.json')))
        if not jsons:
            raise DataError(f'Cityscapes: no *_gtFine_polygons.json under {split_dir!r}; expected {EXPECTED_TREE}')
        parallel_map(convert_json, jsons, nproc)
        counts[split] = len(jsons)
    return counts
