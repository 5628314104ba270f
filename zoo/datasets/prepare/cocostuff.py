"""COCO-Stuff-10k (``cocostuff-10k-v1.1.zip``): ``annotations/<id>.mat`` -> ``labels/<id>.png``.

The PNG keeps the raw ``S`` values of the .mat (0 = unlabeled, 1..182 = COCO category ids,
things 1..91 and stuff 92..182), so one prepared tree serves both label conventions of the
loader (see ``zoo/datasets/cocostuff.py``):

* 182 classes (sssegmentation's ``COCOStuff10kDataset``, used by the MCIBI configs): id - 1,
  unlabeled -> ignore. The 11 COCO thing ids that were never annotated stay as empty classes.
* 171 classes (mmsegmentation's converter + ``reduce_zero_label``): the 11 unused ids are
  dropped and the rest renumbered contiguously, unlabeled -> ignore.
"""
import os

import numpy as np

from ...utils.errors import DataError
from ..meta import COCOSTUFF_NUM_RAW_IDS, COCOSTUFF_UNUSED_IDS
from .common import parallel_map, read_id_list, require_dir, write_label_png

EXPECTED_TREE = ('<root>/images/<id>.jpg, <root>/annotations/<id>.mat (with the S label matrix) and '
                 '<root>/imageLists/{train,test}.txt (cocostuff-10k-v1.1.zip extracted into <root>)')
LABEL_DIR = 'labels'



def raw_to_train_id_lut(num_classes, ignore_index=255):
    """A 256-entry lookup table from stored ``S`` values to train ids (171 or 182 classes)."""
    lut = np.full(256, ignore_index, dtype=np.int64)
    if num_classes == 182:
        lut[1:COCOSTUFF_NUM_RAW_IDS + 1] = np.arange(COCOSTUFF_NUM_RAW_IDS)
    elif num_classes == 171:
        used = [i for i in range(1, COCOSTUFF_NUM_RAW_IDS + 1) if i not in COCOSTUFF_UNUSED_IDS]
        lut[used] = np.arange(len(used))
    else:
        raise DataError(f'COCOStuff10k: num_classes must be 171 (mmseg mapping) or 182 (sssegmentation), '
                        f'got {num_classes}')
    return lut


def read_mat_label(mat_path):
    from scipy.io import loadmat

    try:
        data = loadmat(mat_path)
    except Exception as e:  # scipy raises several types for corrupt files
        raise DataError(f'COCOStuff10k: cannot read {mat_path!r}: {e}') from None
    if 'S' not in data:
        raise DataError(f'COCOStuff10k: {mat_path!r} has no "S" label matrix')
    s = np.asarray(data['S'])
    if s.ndim != 2:
        raise DataError(f'COCOStuff10k: "S" in {mat_path!r} is not a 2-D label matrix')
    if s.size and (s.min() < 0 or s.max() > COCOSTUFF_NUM_RAW_IDS):
        raise DataError(f'COCOStuff10k: {mat_path!r} has label values outside 0..{COCOSTUFF_NUM_RAW_IDS}')
    return s.astype(np.uint8)


def _convert(args):
    mat_path, png_path = args
    write_label_png(png_path, read_mat_label(mat_path))


def prepare_cocostuff10k(root, nproc=1):
    """Convert the .mat annotations of both lists; return ``{list: count}``."""
    require_dir(root, 'COCOStuff10k', EXPECTED_TREE)
    img_dir = require_dir(os.path.join(root, 'images'), 'COCOStuff10k', EXPECTED_TREE)
    ann_dir = require_dir(os.path.join(root, 'annotations'), 'COCOStuff10k', EXPECTED_TREE)
    require_dir(os.path.join(root, 'imageLists'), 'COCOStuff10k', EXPECTED_TREE)
    counts, jobs = {}, []
    for split in ('train', 'test'):
        ids = read_id_list(os.path.join(root, 'imageLists', f'{split}.txt'), 'COCOStuff10k', EXPECTED_TREE)
        for i in ids:
            for path in (os.path.join(img_dir, f'{i}.jpg'), os.path.join(ann_dir, f'{i}.mat')):
                if not os.path.isfile(path):
                    raise DataError(f'COCOStuff10k: {path!r} (listed in imageLists/{split}.txt) does not exist; '
                                    f'expected {EXPECTED_TREE}')
            jobs.append((os.path.join(ann_dir, f'{i}.mat'), os.path.join(root, LABEL_DIR, f'{i}.png')))
        counts[split] = len(ids)
    parallel_map(_convert, jobs, nproc)
    return counts
