"""COCO-Stuff-10k (``cocostuff-10k-v1.1``): ``images/<id>.jpg``, ``labels/<id>.png`` (made from
``annotations/<id>.mat`` by ``tools/data/cocostuff.py``), ``imageLists/{train,test}.txt``
(9,000 / 1,000 images).

Two label conventions, chosen by ``num_classes``:

* ``171`` (default; mmsegmentation): the 11 never-annotated COCO thing ids are dropped and the
  remaining 171 classes numbered contiguously; unlabeled -> 255. Names/palette from mmseg's
  ``COCOStuffDataset``.
* ``182`` (sssegmentation's ``COCOStuff10kDataset``, used by the MCIBI configs and their
  checkpoints): train id = COCO id - 1, unlabeled -> 255; the 11 unused ids stay as classes that
  never occur (their IoU is NaN and left out of the mean).
"""
import os

import numpy as np

from ..utils.errors import DataError
from ..utils.registry import DATASETS
from .base import Dataset
from .meta import (COCOSTUFF182_CLASSES, COCOSTUFF182_PALETTE, COCOSTUFF_CLASSES, COCOSTUFF_NUM_RAW_IDS,
                   COCOSTUFF_PALETTE)
from .prepare.cocostuff import EXPECTED_TREE, LABEL_DIR, raw_to_train_id_lut
from .prepare.common import read_id_list, require_dir


@DATASETS.register()
class COCOStuff10k(Dataset):
    """COCO-Stuff-10k; ``mode`` is train or val/test (both read ``imageLists/test.txt``)."""

    NUM_CLASSES = 171
    CLASSES = COCOSTUFF_CLASSES
    PALETTE = COCOSTUFF_PALETTE
    LISTS = {'train': 'train', 'val': 'test', 'test': 'test'}

    def __init__(self, dataset_root, transforms, mode='train', num_classes=171, ignore_index=255, seed=0,
                 class_names=None, palette=None):
        self._lut = raw_to_train_id_lut(num_classes, ignore_index)  # DataError unless 171 or 182
        super().__init__(dataset_root, transforms, num_classes=num_classes, mode=mode, ignore_index=ignore_index,
                         seed=seed, class_names=class_names, palette=palette)

    @classmethod
    def default_meta(cls, num_classes):
        if num_classes == 182:
            return COCOSTUFF182_CLASSES, COCOSTUFF182_PALETTE
        return cls.CLASSES, cls.PALETTE

    def load_file_list(self, train_path, val_path, separator):
        if self.mode not in self.LISTS:
            raise DataError(f'COCOStuff10k: mode must be train, val or test, got {self.mode!r}')
        root = self.dataset_root
        require_dir(os.path.join(root, 'images'), 'COCOStuff10k', EXPECTED_TREE)
        label_dir = os.path.join(root, LABEL_DIR)
        if not os.path.isdir(label_dir):
            raise DataError(f'COCOStuff10k: folder {label_dir!r} does not exist; run '
                            f'"python tools/data/cocostuff.py {root}" to convert annotations/*.mat ({EXPECTED_TREE})')
        list_name = self.LISTS[self.mode]
        ids = read_id_list(os.path.join(root, 'imageLists', f'{list_name}.txt'), 'COCOStuff10k', EXPECTED_TREE)
        return [(os.path.join(root, 'images', f'{i}.jpg'), os.path.join(label_dir, f'{i}.png')) for i in ids]

    def encode_label(self, label, label_path):
        if label.size and (label.min() < 0 or label.max() > COCOSTUFF_NUM_RAW_IDS):
            bad = np.unique(label[(label < 0) | (label > COCOSTUFF_NUM_RAW_IDS)])[:5].tolist()
            raise DataError(f'COCOStuff10k: label {label_path!r} has values {bad} outside the COCO-Stuff ids '
                            f'0..{COCOSTUFF_NUM_RAW_IDS}')
        return super().encode_label(label, label_path)

    def map_label(self, label):
        return self._lut[label]
