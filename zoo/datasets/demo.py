"""The generated demo dataset (``DemoShapes``): Cityscapes layout, 6 classes, 255 ignored.

Write it with ``python tools/make_demo_data.py --root data/demo``; the generator and its
analysis (majority baseline, colour-only mIoU) are in ``zoo/datasets/prepare/demo.py``.
"""
from ..utils.registry import DATASETS
from .cityscapes import Cityscapes
from .meta import DEMO_CLASSES, DEMO_PALETTE


@DATASETS.register()
class DemoShapes(Cityscapes):
    """The generated demo dataset (Cityscapes layout, 6 classes, 255 ignored); make it with
    ``tools/make_demo_data.py --root data/demo``."""

    NUM_CLASSES = len(DEMO_CLASSES)
    CLASSES = DEMO_CLASSES
    PALETTE = DEMO_PALETTE

    def __init__(self, dataset_root, transforms, mode='train', num_classes=len(DEMO_CLASSES), ignore_index=255,
                 seed=0, class_names=None, palette=None):
        super().__init__(dataset_root, transforms, mode=mode, num_classes=num_classes,
                         ignore_index=ignore_index, seed=seed, class_names=class_names, palette=palette)
