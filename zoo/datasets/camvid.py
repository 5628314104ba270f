"""CamVid, the 11-class version of SegNet and RegSeg (367 train / 101 val / 233 test):
``<root>/{train,val,test}/<name>.png`` with ``<root>/{split}_trainIds/<name>.png`` made by
``tools/data/camvid.py`` from either RegSeg's color labels or SegNet's id labels; void = 255.

Class order and colors are RegSeg's (``datasets/camvid.py``), so RegSeg CamVid checkpoints
predict in this order. ``mode``: train, val, test or trainval (RegSeg trains on trainval and
evaluates on test).
"""
import glob
import os

from ..utils.errors import DataError
from ..utils.registry import DATASETS
from .base import Dataset
from .meta import CAMVID_CLASSES, CAMVID_PALETTE
from .prepare.camvid import LABEL_SUFFIX

EXPECTED_TREE = '<root>/{train,val,test}/<name>.png and <root>/{train,val,test}_trainIds/<name>.png'
SPLITS = {'train': ('train',), 'val': ('val',), 'test': ('test',), 'trainval': ('train', 'val')}


@DATASETS.register()
class CamVid(Dataset):
    """CamVid 11 classes; ``mode`` is train, val, test or trainval."""

    NUM_CLASSES = 11
    CLASSES = CAMVID_CLASSES
    PALETTE = CAMVID_PALETTE

    def __init__(self, dataset_root, transforms, mode='train', num_classes=11, ignore_index=255, seed=0,
                 class_names=None, palette=None):
        if mode not in SPLITS:
            raise DataError(f'CamVid: mode must be one of {", ".join(SPLITS)}, got {mode!r}')
        self.split = mode
        super().__init__(dataset_root, transforms, num_classes=num_classes,
                         mode='train' if mode in ('train', 'trainval') else 'val', ignore_index=ignore_index,
                         seed=seed, class_names=class_names, palette=palette)

    def load_file_list(self, train_path, val_path, separator):
        items = []
        for split in SPLITS[self.split]:
            img_dir = os.path.join(self.dataset_root, split)
            lab_dir = os.path.join(self.dataset_root, split + LABEL_SUFFIX)
            if not os.path.isdir(img_dir):
                raise DataError(f'CamVid: folder {img_dir!r} does not exist; expected {EXPECTED_TREE}')
            if not os.path.isdir(lab_dir):
                raise DataError(f'CamVid: folder {lab_dir!r} does not exist; run "python tools/data/camvid.py '
                                f'{self.dataset_root}" to convert the labels ({EXPECTED_TREE})')
            imgs = sorted(glob.glob(os.path.join(img_dir, '*.png')))
            if not imgs:
                raise DataError(f'CamVid: no *.png images in {img_dir!r}; expected {EXPECTED_TREE}')
            items += [(img, os.path.join(lab_dir, os.path.basename(img))) for img in imgs]
        return items
