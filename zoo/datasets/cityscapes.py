"""Cityscapes: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` with
``gtFine/<split>/<city>/*_gtFine_labelTrainIds.png`` (19 classes, 255 ignored).

The ``*_labelTrainIds.png`` files are made from the official polygons by
``tools/data/cityscapes.py`` (see docs/data.md).
"""
import glob
import os

from ..utils.errors import DataError
from ..utils.registry import DATASETS
from .base import Dataset
from .meta import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE


EXPECTED_TREE = ('expected <root>/leftImg8bit/<split>/<city>/*_leftImg8bit.png and '
                 '<root>/gtFine/<split>/<city>/*_gtFine_labelTrainIds.png')


@DATASETS.register()
class Cityscapes(Dataset):
    """Cityscapes fine annotations; ``mode`` is train, val, test or trainval."""

    NUM_CLASSES = 19
    CLASSES = CITYSCAPES_CLASSES
    PALETTE = CITYSCAPES_PALETTE

    def __init__(self, dataset_root, transforms, mode='train', num_classes=19, ignore_index=255, seed=0,
                 class_names=None, palette=None):
        super().__init__(dataset_root, transforms, num_classes=num_classes, mode=mode,
                         ignore_index=ignore_index, seed=seed, class_names=class_names, palette=palette)

    def load_file_list(self, train_path, val_path, separator):
        splits = ['train', 'val'] if self.mode == 'trainval' else [self.mode]
        items = []
        for split in splits:
            img_dir = os.path.join(self.dataset_root, 'leftImg8bit', split)
            lab_dir = os.path.join(self.dataset_root, 'gtFine', split)
            if not os.path.isdir(img_dir):
                raise DataError(f'Cityscapes: folder {img_dir!r} does not exist; {EXPECTED_TREE}')
            if split != 'test' and not os.path.isdir(lab_dir):
                raise DataError(f'Cityscapes: folder {lab_dir!r} does not exist; {EXPECTED_TREE}')
            imgs = sorted(glob.glob(os.path.join(img_dir, '*', '*_leftImg8bit.png')))
            for img in imgs:
                if split == 'test':
                    items.append((img, None))
                    continue
                rel = os.path.relpath(img, img_dir).replace('_leftImg8bit.png', '_gtFine_labelTrainIds.png')
                items.append((img, os.path.join(lab_dir, rel)))
        if not items:
            raise DataError(f'Cityscapes: no *_leftImg8bit.png images under {self.dataset_root!r} for mode '
                            f'{self.mode!r}; {EXPECTED_TREE}')
        return items
