"""LIP (Look Into Person): ``TrainVal_images/{train,val}_images/<id>.jpg``,
``TrainVal_parsing_annotations/{train,val}_segmentations/<id>.png`` and the id lists
``TrainVal_images/{train,val}_id.txt``; 20 classes (0 = background), stored as is.

Left/right parts swap under a horizontal flip: use
``RandomHorizontalFlip(swap_pairs=LIP.FLIP_PAIRS)`` (see configs/_base_/lip.yml).
Class names and palette follow mmseg's ``LIPDataset``.
"""
import os

from ..utils.errors import DataError
from ..utils.registry import DATASETS
from .base import Dataset
from .meta import LIP_CLASSES, LIP_PALETTE
from .prepare.common import require_dir
from .prepare.lip import EXPECTED_TREE, split_paths



@DATASETS.register()
class LIP(Dataset):
    """LIP human parsing; ``mode`` is train or val."""

    NUM_CLASSES = 20
    CLASSES = LIP_CLASSES
    PALETTE = LIP_PALETTE
    # (Left-arm, Right-arm), (Left-leg, Right-leg), (Left-shoe, Right-shoe)
    FLIP_PAIRS = ((14, 15), (16, 17), (18, 19))

    def __init__(self, dataset_root, transforms, mode='train', num_classes=20, ignore_index=255, seed=0,
                 class_names=None, palette=None):
        super().__init__(dataset_root, transforms, num_classes=num_classes, mode=mode, ignore_index=ignore_index,
                         seed=seed, class_names=class_names, palette=palette)

    def load_file_list(self, train_path, val_path, separator):
        if self.mode not in ('train', 'val'):
            raise DataError(f'LIP: mode must be train or val, got {self.mode!r}')
        img_dir, lab_dir, id_list = split_paths(self.dataset_root, self.mode)
        require_dir(img_dir, 'LIP', EXPECTED_TREE)
        require_dir(lab_dir, 'LIP', EXPECTED_TREE)
        if not os.path.isfile(id_list):
            raise DataError(f'LIP: id list {id_list!r} does not exist; run "python tools/data/lip.py '
                            f'{self.dataset_root}" ({EXPECTED_TREE})')
        with open(id_list, 'r', encoding='utf-8') as f:
            ids = [line.strip().split()[0] for line in f if line.strip()]
        return [(os.path.join(img_dir, f'{i}.jpg'), os.path.join(lab_dir, f'{i}.png')) for i in ids]
