"""Segmentation metrics from one confusion matrix (mmseg's definitions).

``cm[t, p]`` counts pixels of true class ``t`` predicted as ``p``; pixels whose label is the
ignore index (or outside ``[0, num_classes)``) are not counted. From it:

* ``IoU[c] = cm[c, c] / (sum_row[c] + sum_col[c] - cm[c, c])``, ``Acc[c] = cm[c, c] / sum_row[c]``;
* a class absent from both labels and predictions has IoU NaN, a class absent from the labels
  has Acc NaN; means skip NaNs (``np.nanmean``, as mmseg's ``IoUMetric``);
* ``aAcc`` = correctly classified valid pixels / valid pixels.

Values are fractions in [0, 1]; :func:`format_table` prints percentages with 2 decimals.
"""
import numpy as np


def confusion_matrix(pred, label, num_classes, ignore_index=255):
    """``[num_classes, num_classes]`` int64 counts (rows: label, columns: prediction)."""
    pred = np.asarray(pred).reshape(-1).astype(np.int64)
    label = np.asarray(label).reshape(-1).astype(np.int64)
    if pred.shape != label.shape:
        raise ValueError(f'prediction has {pred.size} pixels, label {label.size}')
    valid = (label != ignore_index) & (label >= 0) & (label < num_classes)
    idx = label[valid] * num_classes + pred[valid]
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def all_reduce_confusion(cm):
    """Sum a confusion matrix over the processes of a distributed run (no-op for one)."""
    import paddle
    import paddle.distributed as dist
    if dist.get_world_size() <= 1:
        return cm
    t = paddle.to_tensor(np.ascontiguousarray(cm, dtype=np.int64))
    dist.all_reduce(t)
    return t.numpy()


def metrics_from_confusion(cm):
    """``{'IoU', 'Acc'}`` per class (NaN where undefined), ``mIoU``, ``mAcc``, ``aAcc``."""
    cm = np.asarray(cm, dtype=np.float64)
    inter = np.diag(cm)
    area_label = cm.sum(axis=1)
    area_pred = cm.sum(axis=0)
    union = area_label + area_pred - inter
    with np.errstate(divide='ignore', invalid='ignore'):
        iou = np.where(union > 0, inter / union, np.nan)
        acc = np.where(area_label > 0, inter / area_label, np.nan)
    total = area_label.sum()
    return {
        'IoU': iou,
        'Acc': acc,
        'mIoU': _nanmean(iou),
        'mAcc': _nanmean(acc),
        'aAcc': float(inter.sum() / total) if total > 0 else float('nan'),
    }


def _nanmean(x):
    x = np.asarray(x, dtype=np.float64)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float('nan')


class ConfusionMatrix:
    """Accumulates a confusion matrix over images; ``compute()`` gives the metrics."""

    def __init__(self, num_classes, ignore_index=255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred, label):
        self.mat += confusion_matrix(pred, label, self.num_classes, self.ignore_index)

    def all_reduce(self):
        self.mat = all_reduce_confusion(self.mat)
        return self

    def compute(self):
        return metrics_from_confusion(self.mat)


def _pct(v):
    return 'nan' if v is None or not np.isfinite(v) else f'{100.0 * v:.2f}'


def format_table(metrics, class_names=None):
    """Per-class IoU/Acc table and a summary row (aAcc, mIoU, mAcc), in percent like mmseg."""
    from prettytable import PrettyTable
    iou, acc = metrics['IoU'], metrics['Acc']
    names = list(class_names) if class_names is not None and len(class_names) == len(iou) else \
        [str(i) for i in range(len(iou))]
    per_class = PrettyTable()
    per_class.field_names = ['Class', 'IoU', 'Acc']
    for name, i, a in zip(names, iou, acc):
        per_class.add_row([name, _pct(i), _pct(a)])
    summary = PrettyTable()
    summary.field_names = ['aAcc', 'mIoU', 'mAcc']
    summary.add_row([_pct(metrics['aAcc']), _pct(metrics['mIoU']), _pct(metrics['mAcc'])])
    return f'per class results:\n{per_class.get_string()}\nSummary:\n{summary.get_string()}'
