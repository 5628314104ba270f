"""The ``Dataset`` base: an ``image label`` file list read through a list of transforms.

A sample is a dict flowing through the transforms:
``{'img': HxWx3 RGB, 'label': HxW class ids or None, 'img_path', 'label_path'}``. The image is
read as uint8 and stays uint8 until ``Normalize`` (see ``transforms.py``); the label keeps the
dtype of its file (uint8 for 8-bit PNGs) until ``__getitem__`` hands it out as int64.
``__getitem__`` returns ``(img CHW float32, label HxW int64)`` for training and, for
validation, ``(img CHW float32, label at original size HxW int64)``: evaluation resizes
logits back to the label, as mmseg and PaddleSeg do.

Determinism: each sample seeds ``random``/``numpy`` from (seed, epoch, index) before its
transforms run, so a sample's augmentation does not depend on the worker that loads it, and a
resumed run sees exactly the samples the uninterrupted run would have seen. The sampler
passes the epoch in the index (``epoch * len(dataset) + i``); see ``zoo.engine.sampler``.
"""
import os
import random

import cv2
import numpy as np
import paddle

from ..utils.errors import DataError
from ..utils.registry import DATASETS, TRANSFORMS
from .meta import resolve_meta

cv2.setNumThreads(0)  # DataLoader workers are the parallelism; OpenCV threads fight them.
_IMREAD_RGB = getattr(cv2, 'IMREAD_COLOR_RGB', None)  # OpenCV >= 4.10 decodes straight to RGB


def read_image(path):
    """Read an RGB image as uint8 HxWx3 (as mmseg's ``LoadImageFromFile``, OpenCV's decoder);
    DataError if missing or unreadable."""
    if not os.path.isfile(path):
        raise DataError(f'image file {path!r} does not exist')
    img = cv2.imread(path, _IMREAD_RGB or cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f'image file {path!r} cannot be decoded (corrupt or not an image)')
    return img if _IMREAD_RGB else cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=img)


def read_label(path):
    """Read a single-channel label PNG as HxW class ids in the file's own integer dtype (uint8
    or uint16); DataError if missing or not 1-channel."""
    if not os.path.isfile(path):
        raise DataError(f'label file {path!r} does not exist')
    lab = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if lab is None:
        raise DataError(f'label file {path!r} cannot be decoded (corrupt or not an image)')
    if lab.ndim == 3:
        # palette PNGs come out as 1 channel with IMREAD_UNCHANGED; a 3-channel label is a
        # color mask, not train ids.
        raise DataError(f'label file {path!r} has {lab.shape[2]} channels; expected a single-channel '
                        'image of class ids')
    return lab


def to_chw(img):
    """The network's CHW float32 input from the transforms' HxWx3 image."""
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)


def build_transforms(transforms):
    """Transforms may come built (objects) or as ``type:`` dicts (Python API users)."""
    out = []
    for t in transforms or []:
        if isinstance(t, dict):
            t = dict(t)
            cls = TRANSFORMS.get(t.pop('type'), 'transforms')
            t = cls(**t)
        out.append(t)
    return out


class Compose:
    def __init__(self, transforms):
        self.transforms = build_transforms(transforms)

    def __call__(self, sample):
        for t in self.transforms:
            sample = t(sample)
        return sample


@DATASETS.register()
class Dataset(paddle.io.Dataset):
    """A generic dataset from ``image_path label_path`` lines.

    Args:
        dataset_root: folder the paths in the file lists are relative to.
        transforms: train or val transforms (a list of transform dicts in YAML).
        num_classes: number of classes; label values >= num_classes other than
            ``ignore_index`` are an error naming the file.
        mode: 'train' or 'val'.
        train_path / val_path: the file lists (relative to dataset_root or absolute).
        separator: field separator in the lists (default: whitespace).
        reduce_zero_label: map 0 -> ignore and v -> v - 1 (ADE20K convention).
        seed: base seed of the per-sample augmentation.
        class_names / palette: ``num_classes`` names / ``[r, g, b]`` colours replacing the
            dataset's defaults (``CLASSES`` / ``PALETTE``, see ``zoo/datasets/meta.py``); the
            object exposes the result as ``class_names`` and ``palette``.
    """

    NUM_CLASSES = None
    CLASSES = None
    PALETTE = None

    def __init__(self, dataset_root, transforms, num_classes=None, mode='train', train_path=None,
                 val_path=None, separator=' ', ignore_index=255, reduce_zero_label=False, seed=0,
                 class_names=None, palette=None):
        self.dataset_root = dataset_root
        self.mode = mode
        self.num_classes = num_classes if num_classes is not None else self.NUM_CLASSES
        self.ignore_index = ignore_index
        self.reduce_zero_label = reduce_zero_label
        self.seed = seed
        self.transforms = Compose(transforms)
        if self.num_classes is None:
            raise DataError(f'{type(self).__name__}: num_classes is required')
        default_names, default_palette = self.default_meta(self.num_classes)
        self.class_names, self.palette = resolve_meta(self.num_classes, class_names, palette, default_names,
                                                      default_palette, where=type(self).__name__)
        if mode not in ('train', 'val', 'test', 'trainval'):
            raise DataError(f'{type(self).__name__}: mode must be train, val, test or trainval, got {mode!r}')
        if not os.path.isdir(dataset_root):
            raise DataError(f'dataset_root {dataset_root!r} does not exist (expected the dataset folder; '
                            'see docs/data.md)')
        self.file_list = self.load_file_list(train_path, val_path, separator)
        if not self.file_list:
            raise DataError(f'{type(self).__name__}: no samples found for mode {mode!r} under {dataset_root!r}')
        for img_path, label_path in self.file_list:  # fail now, not in a worker an hour later
            for p, what in ((img_path, 'image'), (label_path, 'label')):
                if p is not None and not os.path.isfile(p):
                    raise DataError(f'{what} file {p!r} listed for {type(self).__name__} ({mode}) does not exist')

    @classmethod
    def default_meta(cls, num_classes):
        """``(CLASSES, PALETTE)`` this loader uses for ``num_classes`` classes."""
        return cls.CLASSES, cls.PALETTE

    # -- file lists ------------------------------------------------------------------
    def load_file_list(self, train_path, val_path, separator):
        """Return ``[(image_path, label_path or None), ...]``; subclasses scan folders."""
        list_path = train_path if self.mode == 'train' else val_path
        if list_path is None:
            raise DataError(f'{type(self).__name__}: {"train_path" if self.mode == "train" else "val_path"} '
                            f'is required for mode {self.mode!r}')
        return read_file_list(list_path, self.dataset_root, separator)

    # -- samples ---------------------------------------------------------------------
    def __len__(self):
        return len(self.file_list)

    def _seed(self, index):
        epoch, i = divmod(index, len(self.file_list))
        s = (self.seed * 1_000_003 + epoch * 7919 + i) % (2 ** 32)
        random.seed(s)
        np.random.seed(s)
        return i

    def load_sample(self, i):
        img_path, label_path = self.file_list[i]
        img = read_image(img_path)
        label = read_label(label_path) if label_path else None
        if label is not None:
            if label.shape != img.shape[:2]:
                raise DataError(f'label {label_path!r} is {label.shape[1]}x{label.shape[0]} but image '
                                f'{img_path!r} is {img.shape[1]}x{img.shape[0]} (W x H)')
            label = self.encode_label(label, label_path)
        return {'img': img, 'label': label, 'img_path': img_path, 'label_path': label_path}

    def map_label(self, label):
        """Stored values -> train ids, value by value, without a range check (``zoo.datasets.scan``
        tabulates it over 0..255 to check labels from their histograms)."""
        if self.reduce_zero_label:
            label = label.astype(np.int32) - 1  # a signed copy: stored 0 becomes -1
            label[label == -1] = self.ignore_index
            label[label == self.ignore_index - 1] = self.ignore_index
        return label

    def encode_label(self, label, label_path):
        """Map stored values to train ids and check their range."""
        label = self.map_label(label)
        bad = (label != self.ignore_index) & ((label < 0) | (label >= self.num_classes))
        if bad.any():
            vals = np.unique(label[bad])[:5].tolist()
            raise DataError(f'label {label_path!r} has values {vals} outside [0, {self.num_classes - 1}] '
                            f'(ignore index {self.ignore_index})')
        return label

    def __getitem__(self, index):
        img, label, _, _ = self.get_item(index)
        return img, label

    def get_item(self, index, with_image=False, file_index=None):
        """``(img CHW float32, label HxW int64, valid_shape, image)`` of sample ``index``.

        ``label`` is the transformed label in training modes and the label as read otherwise
        (metrics are computed at the original resolution). ``valid_shape`` is the (h, w) of the
        image inside ``img`` before bottom/right padding by ``Pad`` (evaluation crops the logits
        back to it, as PaddleSeg does after its val ``Padding``); ``image`` the image as read
        (uint8 HxWx3, for test-time augmentation that rescales it, mmseg's) with
        ``with_image``, else None. ``file_index``: load that file instead, with the augmentation
        seed of slot ``index`` (class-uniform sampling)."""
        i = self._seed(index)
        sample = self.load_sample(i if file_index is None else file_index)
        ori_label, ori_img = sample['label'], sample['img']  # transforms return new arrays
        sample = self.transforms(sample)
        img = to_chw(sample['img'])
        valid = np.asarray(sample.get('valid_shape', img.shape[1:]), dtype='int64')
        if self.mode in ('train', 'trainval'):  # trainval trains too (e.g. Cityscapes train+val)
            label = sample['label']
        else:
            label = ori_label
        if label is None:
            label = np.full(img.shape[1:], self.ignore_index, dtype='int64')
        return img, np.ascontiguousarray(label.astype('int64')), valid, ori_img if with_image else None


class EvalSamples(paddle.io.Dataset):
    """A dataset's ``get_item`` with the extras evaluation needs, as a map-style dataset (for a
    DataLoader)."""

    def __init__(self, dataset, with_image=False):
        super().__init__()
        self.dataset = dataset
        self.with_image = with_image

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        img, label, valid, image = self.dataset.get_item(index, self.with_image)
        return (img, label, valid) + ((image,) if self.with_image else ())


def read_file_list(list_path, dataset_root, separator=' '):
    if not os.path.isabs(list_path) and not os.path.isfile(list_path):
        list_path = os.path.join(dataset_root, list_path)
    if not os.path.isfile(list_path):
        raise DataError(f'file list {list_path!r} does not exist')
    items = []
    try:
        with open(list_path, 'r', encoding='utf-8') as f:
            lines = f.readlines()
    except UnicodeDecodeError:
        raise DataError(f'file list {list_path!r} is not UTF-8 text (expected "image_path label_path" '
                        'lines)') from None
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        parts = line.split(separator) if separator.strip() else line.split()
        if len(parts) not in (1, 2):
            raise DataError(f'{list_path}:{n}: expected "image_path label_path", got {line!r}')
        img = os.path.join(dataset_root, parts[0])
        lab = os.path.join(dataset_root, parts[1]) if len(parts) == 2 else None
        items.append((img, lab))
    if not items:
        raise DataError(f'file list {list_path!r} is empty')
    return items
