"""Score predictions made by anything (an exported model in Paddle Inference, ONNX Runtime,
OpenVINO ...) on a dataset, with the metric code ``tools/val.py`` uses.

``score_predictions(dataset, predict)`` reads every sample at its original size (the image as
``read_image`` gives it, the label encoded as the dataset does for evaluation), calls
``predict(rgb HxWx3 float32 0-255) -> HxW class ids`` and accumulates one confusion matrix.
For the same predictions the numbers are those of :func:`zoo.engine.evaluator.evaluate`.
"""
from .metrics import ConfusionMatrix


def score_predictions(dataset, predict, limit=None):
    """``{'mIoU', 'aAcc', 'mAcc', 'IoU', 'Acc', 'class_names', 'confusion_matrix', 'images'}``."""
    num_classes = int(dataset.num_classes)
    cm = ConfusionMatrix(num_classes, int(getattr(dataset, 'ignore_index', 255)))
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    for i in range(n):
        sample = dataset.load_sample(i)
        pred = predict(sample['img'])
        if pred.shape != sample['label'].shape:
            raise ValueError(f'prediction {pred.shape} for {sample["img_path"]} is not the label size '
                             f'{sample["label"].shape}')
        cm.update(pred, sample['label'])
    res = cm.compute()
    names = getattr(dataset, 'class_names', None) or getattr(dataset, 'CLASSES', None)
    res['class_names'] = list(names) if names is not None and len(names) == num_classes else \
        [str(i) for i in range(num_classes)]
    res['confusion_matrix'] = cm.mat
    res['images'] = n
    return res
