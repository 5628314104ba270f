"""Class-uniform sampling (RegSeg's ``class_uniform_pct``, from NVIDIA's semantic-segmentation code).

``ClassUniformDataset`` wraps a training dataset: with probability ``class_uniform_pct`` a
sample is replaced by one drawn class-first: a class uniformly among the classes present in the
training set, then an image containing it. The per-class image index comes from the dataset
scanner's label histograms (``zoo/datasets/scan.py``, so the pre-flight check that follows reads
them from its cache) and is kept in ``index_file``. Simplification: the reference also centres
the crop on a centroid of the drawn class; here the crop stays random.
"""
import json
import os
import random

import numpy as np
import paddle

from ..utils.atomic import atomic_write_text
from ..utils.errors import ConfigError, DataError
from ..utils.logger import logger
from ..utils.registry import DATASETS
from .scan import dataset_tasks, label_format_problem, label_lut, scan_files


def build_class_index(dataset):
    """``{class_id: [image indices containing it]}`` of a file-list dataset, after its label mapping.

    Labels the scanner finds unusable are left out here; the pre-flight check reports them.
    """
    # the images too: the same task set as the pre-flight check, hence the same cache file, so
    # the check that follows reads every record from the cache instead of decoding the labels again
    records, _ = scan_files(dataset_tasks(dataset), num_workers=2, progress=True, desc='class index')
    lut = label_lut(dataset)
    index = {c: [] for c in range(dataset.num_classes)}
    for i, (_, label_path) in enumerate(dataset.file_list):
        if label_path is None:
            continue
        rec = records[(os.path.abspath(label_path), 'label')]
        if rec['error'] or label_format_problem(rec):
            continue
        mapped = lut[np.asarray(rec['values'], dtype=np.int64)]
        for c in np.unique(mapped[(mapped >= 0) & (mapped < dataset.num_classes)]):
            index[int(c)].append(i)
    return index


@DATASETS.register()
class ClassUniformDataset(paddle.io.Dataset):
    """Class-uniform sampling over another dataset (``class_uniform_pct`` of RegSeg).

    Args:
        dataset: the wrapped training dataset (a ``type:`` dict in YAML).
        class_uniform_pct: probability that a sample is drawn class-first (RegSeg: 0.5).
        index_file: JSON cache of the per-class image index (built from the labels if absent
            or stale).
    """

    def __init__(self, dataset, class_uniform_pct=0.5, index_file=''):
        if not 0.0 <= class_uniform_pct <= 1.0:
            raise ConfigError(f'ClassUniformDataset.class_uniform_pct must be in [0, 1], got {class_uniform_pct}')
        if not hasattr(dataset, 'file_list') or not hasattr(dataset, 'load_sample'):
            raise ConfigError('ClassUniformDataset.dataset: expected a zoo Dataset (with a file list)')
        self.dataset = dataset
        self.class_uniform_pct = float(class_uniform_pct)
        self.class_index = self._load_index(index_file)
        self.classes_present = [c for c, idx in sorted(self.class_index.items()) if idx]
        if not self.classes_present:
            raise DataError('ClassUniformDataset: no labelled pixels in the wrapped dataset')

    def _load_index(self, index_file):
        ds = self.dataset
        labels = [lp for _, lp in ds.file_list]
        if index_file and os.path.isfile(index_file):
            with open(index_file, encoding='utf-8') as f:
                cached = json.load(f)
            if cached.get('labels') == labels:
                return {int(c): v for c, v in cached['classes'].items()}
            logger.info(f'{index_file}: file list changed, rebuilding the class index')
        logger.info(f'building the class index of {len(labels)} labels for class-uniform sampling')
        index = build_class_index(ds)
        if index_file:  # atomic, with a temp name of its own (every rank of a first run writes it)
            atomic_write_text(index_file, json.dumps({'labels': labels, 'classes': index}), 'class index')
        return index

    def __getattr__(self, name):  # num_classes, ignore_index, class_names, ... of the wrapped dataset
        if name == 'dataset':
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self):
        return len(self.dataset)

    def pick(self, index):
        """The image index used for sample ``index`` (deterministic per seed, epoch, index)."""
        n = len(self.dataset)
        epoch, i = divmod(index, n)
        rng = random.Random((self.dataset.seed * 1_000_003 + epoch * 7919 + i) * 2 + 1)
        if rng.random() < self.class_uniform_pct:
            cls = rng.choice(self.classes_present)
            return rng.choice(self.class_index[cls])
        return i

    def __getitem__(self, index):
        # the augmentation seed of this slot, as the wrapped dataset would use, on the picked file
        img, label, _, _ = self.dataset.get_item(index, file_index=self.pick(index))
        return img, label

