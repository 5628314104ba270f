"""Helpers shared by the preparation functions and the loaders: layout checks, label I/O,
and a process pool."""
import json
import os
import shutil
from multiprocessing import Pool

import cv2
import numpy as np

from ...utils.errors import DataError


def require_dir(path, dataset, tree):
    """DataError naming the missing folder and showing the expected tree (one line)."""
    if not os.path.isdir(path):
        raise DataError(f'{dataset}: folder {path!r} does not exist; expected {tree}')
    return path


def require_file(path, dataset, tree):
    if not os.path.isfile(path):
        raise DataError(f'{dataset}: file {path!r} does not exist; expected {tree}')
    return path


def read_id_list(path, dataset, tree):
    """Image ids, one per line (``imageLists/train.txt``, ``train_id.txt``, ...)."""
    require_file(path, dataset, tree)
    with open(path, 'r', encoding='utf-8') as f:
        ids = [line.strip().split()[0] for line in f if line.strip()]
    if not ids:
        raise DataError(f'{dataset}: id list {path!r} is empty')
    return ids


def read_json(path, what):
    """A JSON file's content; DataError naming ``what`` and the file if it cannot be read or parsed."""
    try:
        with open(path, 'r', encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f'{what}: cannot read {path!r} as JSON ({e})') from None


def write_ids(path, ids):
    with open(path, 'w', encoding='utf-8') as f:
        f.writelines(f'{i}\n' for i in ids)


def write_label_png(path, label):
    """Write an HxW array of class ids (0..255) as a single-channel 8-bit PNG."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f'label for {path} must be 2-D, got shape {label.shape}')
    if label.size and (label.min() < 0 or label.max() > 255):
        raise DataError(f'label for {path!r} has values outside 0..255 ({label.min()}..{label.max()})')
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    if not cv2.imwrite(path, label.astype(np.uint8)):
        raise DataError(f'cannot write label file {path!r}')


def read_gray_label(path, dataset):
    """A single-channel label PNG as uint8 HxW (DataError naming the file otherwise)."""
    if not os.path.isfile(path):
        raise DataError(f'{dataset}: label file {path!r} does not exist')
    lab = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise DataError(f'{dataset}: label file {path!r} cannot be decoded')
    if lab.ndim != 2:
        raise DataError(f'{dataset}: label file {path!r} has {lab.shape[2]} channels; expected single-channel '
                        'class ids')
    return lab


def check_label_range(label, path, num_classes, dataset, ignore_index=255):
    """DataError naming the file if a value is outside [0, num_classes) and not ignore."""
    bad = (label < 0) | (label >= num_classes)
    if ignore_index is not None:
        bad &= label != ignore_index
    if bad.any():
        vals = np.unique(label[bad])[:5].tolist()
        ignore = f' (ignore index {ignore_index})' if ignore_index is not None else ''
        raise DataError(f'{dataset}: label {path!r} has values {vals} outside [0, {num_classes - 1}]{ignore}')


def link_or_copy(src, dst):
    """Hard-link ``src`` to ``dst`` (no extra disk space) or copy when linking fails."""
    if os.path.exists(dst):
        return
    os.makedirs(os.path.dirname(dst) or '.', exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def parallel_map(fn, items, nproc=1):
    """``[fn(x) for x in items]`` over ``nproc`` processes (order kept)."""
    items = list(items)
    if nproc <= 1 or len(items) < 2:
        return [fn(x) for x in items]
    pool = Pool(min(nproc, len(items)))
    try:
        return pool.map(fn, items, chunksize=max(1, len(items) // (nproc * 8)))
    finally:
        # close + join, not terminate: paddle (imported with zoo) prints a fatal-signal report
        # when a worker gets SIGTERM. On an error the queued work finishes first.
        pool.close()
        pool.join()
