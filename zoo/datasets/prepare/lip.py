"""LIP (Look Into Person, ``TrainVal_images.zip`` + ``TrainVal_parsing_annotations.zip``).

The loader reads the official tree: ``TrainVal_images/{train,val}_images/<id>.jpg``,
``TrainVal_parsing_annotations/{train,val}_segmentations/<id>.png`` (single-channel, 0..19)
and the id lists ``TrainVal_images/{train,val}_id.txt``. Preparing fixes the two ways the
extracted archives commonly differ from that (a doubled top folder, annotation folders named
``{split}_images`` as on some mirrors, missing id lists) and checks every annotation.
"""
import glob
import os
import shutil

from ...utils.errors import DataError
from .common import (check_label_range, parallel_map, read_gray_label, read_id_list, require_dir,
                     write_ids)

IMAGE_ROOT = 'TrainVal_images'
LABEL_ROOT = 'TrainVal_parsing_annotations'
SPLITS = ('train', 'val')
NUM_CLASSES = 20
EXPECTED_TREE = ('<root>/TrainVal_images/{train,val}_images/<id>.jpg, <root>/TrainVal_images/{train,val}_id.txt '
                 'and <root>/TrainVal_parsing_annotations/{train,val}_segmentations/<id>.png')


def split_paths(root, split):
    """``(image_dir, label_dir, id_list)`` of a split."""
    return (os.path.join(root, IMAGE_ROOT, f'{split}_images'),
            os.path.join(root, LABEL_ROOT, f'{split}_segmentations'),
            os.path.join(root, IMAGE_ROOT, f'{split}_id.txt'))


def _flatten_doubled(root, name):
    """``<root>/X/X/...`` (zip with a top folder extracted into a folder of the same name) -> ``<root>/X/...``."""
    outer = os.path.join(root, name)
    inner = os.path.join(outer, name)
    if os.path.isdir(inner):
        for entry in os.listdir(inner):
            dst = os.path.join(outer, entry)
            if not os.path.exists(dst):
                shutil.move(os.path.join(inner, entry), dst)
        if not os.listdir(inner):
            os.rmdir(inner)


def _find_annotations(root, split, lab_dir):
    """Some mirrors of the annotation zip name the folder like the images
    (``TrainVal_parsing_annotations/[TrainVal_images/]{split}_images``): move it to
    ``{split}_segmentations``."""
    if os.path.isdir(lab_dir):
        return
    for cand in (os.path.join(root, LABEL_ROOT, IMAGE_ROOT, f'{split}_images'),
                 os.path.join(root, LABEL_ROOT, f'{split}_images')):
        if os.path.isdir(cand) and glob.glob(os.path.join(cand, '*.png')):
            shutil.move(cand, lab_dir)
            parent = os.path.dirname(cand)
            if parent != os.path.join(root, LABEL_ROOT) and not os.listdir(parent):
                os.rmdir(parent)
            return


def _check(label_path):
    check_label_range(read_gray_label(label_path, 'LIP'), label_path, NUM_CLASSES, 'LIP')


def prepare_lip(root, nproc=1, check_labels=True):
    """Normalize and check the extracted tree; return ``{split: count}``."""
    require_dir(root, 'LIP', EXPECTED_TREE)
    for name in (IMAGE_ROOT, LABEL_ROOT):
        _flatten_doubled(root, name)
    counts = {}
    for split in SPLITS:
        img_dir, lab_dir, id_list = split_paths(root, split)
        require_dir(img_dir, 'LIP', EXPECTED_TREE)
        _find_annotations(root, split, lab_dir)
        require_dir(lab_dir, 'LIP', EXPECTED_TREE)
        if not os.path.isfile(id_list):
            ids = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(img_dir, '*.jpg')))
            if not ids:
                raise DataError(f'LIP: no *.jpg images in {img_dir!r}; expected {EXPECTED_TREE}')
            write_ids(id_list, ids)
        ids = read_id_list(id_list, 'LIP', EXPECTED_TREE)
        labels = []
        for i in ids:
            img, lab = os.path.join(img_dir, f'{i}.jpg'), os.path.join(lab_dir, f'{i}.png')
            for p in (img, lab):
                if not os.path.isfile(p):
                    raise DataError(f'LIP: {p!r} (listed in {os.path.basename(id_list)}) does not exist; '
                                    f'expected {EXPECTED_TREE}')
            labels.append(lab)
        if check_labels:
            parallel_map(_check, labels, nproc)
        counts[split] = len(ids)
    return counts
