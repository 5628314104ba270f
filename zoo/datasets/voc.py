"""Pascal VOC 2012 (+ SBD): ``VOCdevkit/VOC2012/JPEGImages/<id>.jpg`` with single-channel labels
in ``VOC2012/SegmentationClassAug/<id>.png`` (made by ``tools/data/voc.py``); 21 classes,
the 255 boundary band ignored.

``mode`` (as PaddleSeg's ``PascalVOC``): ``trainaug`` reads ``ImageSets/Segmentation/train_aug.txt``
(10,582 images: SBD train+val plus VOC train, minus VOC val); ``train``, ``val``, ``trainval``
read VOC's own lists. Class names follow mmseg's ``PascalVOCDataset``; the palette is the VOC
color map.
"""
import os

from ..utils.errors import DataError
from ..utils.registry import DATASETS
from .base import Dataset
from .meta import VOC_CLASSES, VOC_PALETTE
from .prepare.common import read_id_list, require_dir
from .prepare.voc import VOC_TREE

LISTS = {'train': 'train', 'val': 'val', 'trainval': 'trainval', 'trainaug': 'train_aug'}
TRAIN_MODES = ('train', 'trainval', 'trainaug')


@DATASETS.register()
class PascalVOC(Dataset):
    """Pascal VOC 2012 segmentation; ``mode`` is trainaug, train, val or trainval."""

    NUM_CLASSES = 21
    CLASSES = VOC_CLASSES
    PALETTE = VOC_PALETTE

    def __init__(self, dataset_root, transforms, mode='train', num_classes=21, ignore_index=255, seed=0,
                 class_names=None, palette=None):
        if mode not in LISTS:
            raise DataError(f'PascalVOC: mode must be one of {", ".join(LISTS)}, got {mode!r}')
        self.split = mode
        # the base class knows train (augmented label returned) and val (original label)
        super().__init__(dataset_root, transforms, num_classes=num_classes,
                         mode='train' if mode in TRAIN_MODES else 'val', ignore_index=ignore_index, seed=seed,
                         class_names=class_names, palette=palette)

    def load_file_list(self, train_path, val_path, separator):
        voc = os.path.join(self.dataset_root, 'VOC2012')
        require_dir(voc, 'PascalVOC', VOC_TREE)
        img_dir = require_dir(os.path.join(voc, 'JPEGImages'), 'PascalVOC', VOC_TREE)
        lab_dir = os.path.join(voc, 'SegmentationClassAug')
        hint = f'run "python tools/data/voc.py {self.dataset_root} <benchmark_RELEASE>" first'
        if not os.path.isdir(lab_dir):
            raise DataError(f'PascalVOC: folder {lab_dir!r} does not exist; {hint}')
        list_path = os.path.join(voc, 'ImageSets', 'Segmentation', f'{LISTS[self.split]}.txt')
        if self.split == 'trainaug' and not os.path.isfile(list_path):
            raise DataError(f'PascalVOC: list {list_path!r} does not exist; {hint}')
        ids = read_id_list(list_path, 'PascalVOC', VOC_TREE)
        return [(os.path.join(img_dir, f'{i}.jpg'), os.path.join(lab_dir, f'{i}.png')) for i in ids]
