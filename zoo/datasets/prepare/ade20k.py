"""ADE20K (SceneParsing ``ADEChallengeData2016.zip``): the loader reads the official tree as is,
so preparing is checking it: every image has its annotation and values are 0..150."""
import glob
import os

from ...utils.errors import DataError
from .common import check_label_range, parallel_map, read_gray_label, require_dir

SPLITS = ('training', 'validation')
EXPECTED_TREE = ('<root>/images/{training,validation}/*.jpg and <root>/annotations/{training,validation}/*.png '
                 '(ADEChallengeData2016.zip extracted; <root> is ADEChallengeData2016)')


def split_pairs(root, split):
    """``[(image, annotation), ...]`` of one official split, sorted by name."""
    img_dir = require_dir(os.path.join(root, 'images', split), 'ADE20K', EXPECTED_TREE)
    ann_dir = require_dir(os.path.join(root, 'annotations', split), 'ADE20K', EXPECTED_TREE)
    imgs = sorted(glob.glob(os.path.join(img_dir, '*.jpg')))
    if not imgs:
        raise DataError(f'ADE20K: no *.jpg images in {img_dir!r}; expected {EXPECTED_TREE}')
    return [(img, os.path.join(ann_dir, os.path.basename(img)[:-4] + '.png')) for img in imgs]


def _check(ann):
    # stored values: 0 = "other" (ignored after reduce_zero_label), 1..150 = classes
    check_label_range(read_gray_label(ann, 'ADE20K'), ann, 151, 'ADE20K', ignore_index=None)


def prepare_ade20k(root, nproc=1, check_labels=True):
    """Check the extracted tree; return ``{split: count}``."""
    require_dir(root, 'ADE20K', EXPECTED_TREE)
    counts = {}
    for split in SPLITS:
        pairs = split_pairs(root, split)
        for _, ann in pairs:
            if not os.path.isfile(ann):
                raise DataError(f'ADE20K: annotation {ann!r} for an image in images/{split} does not exist; '
                                f'expected {EXPECTED_TREE}')
        if check_labels:
            parallel_map(_check, [a for _, a in pairs], nproc)
        counts[split] = len(pairs)
    return counts
