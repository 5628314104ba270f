"""ADE20K (SceneParsing ADEChallengeData2016): ``images/{training,validation}/*.jpg`` with
``annotations/{training,validation}/*.png``; 150 classes.

Stored annotation 0 is "other objects" and is ignored; class k is stored as k + 1, so the
loader applies ``reduce_zero_label`` (0 -> 255, v -> v - 1) as mmseg and PaddleSeg do.
Class names and palette follow mmseg's ``ADE20KDataset``.
"""
import os

from ..utils.errors import DataError
from ..utils.registry import DATASETS
from .base import Dataset
from .meta import ADE20K_CLASSES, ADE20K_PALETTE
from .prepare.ade20k import EXPECTED_TREE, split_pairs



@DATASETS.register()
class ADE20K(Dataset):
    """ADE20K; ``mode`` is train (``training``) or val (``validation``)."""

    NUM_CLASSES = 150
    CLASSES = ADE20K_CLASSES
    PALETTE = ADE20K_PALETTE
    SPLITS = {'train': 'training', 'val': 'validation'}

    def __init__(self, dataset_root, transforms, mode='train', num_classes=150, ignore_index=255, seed=0,
                 class_names=None, palette=None):
        super().__init__(dataset_root, transforms, num_classes=num_classes, mode=mode, ignore_index=ignore_index,
                         reduce_zero_label=True, seed=seed, class_names=class_names, palette=palette)

    def load_file_list(self, train_path, val_path, separator):
        if self.mode not in self.SPLITS:
            raise DataError(f'ADE20K: mode must be train or val, got {self.mode!r}')
        items = split_pairs(self.dataset_root, self.SPLITS[self.mode])
        for _, ann in items:
            if not os.path.isfile(ann):
                raise DataError(f'ADE20K: annotation {ann!r} does not exist; expected {EXPECTED_TREE}')
        return items
