"""Segmentation metrics from one confusion matrix (mmsegmentation's definitions).

``cm[t, p]`` counts pixels of true class ``t`` predicted as ``p``; pixels whose label is the
ignore index (or outside ``[0, num_classes)``) are not counted. With ``inter = diag(cm)``,
``label = cm.sum(1)`` and ``pred = cm.sum(0)``, per class:

* ``IoU = inter / (label + pred - inter)``, ``Acc = Recall = inter / label``;
* ``Dice = 2 inter / (label + pred)``, ``Precision = inter / pred``;
* ``Fscore = (1 + b^2) inter / ((1 + b^2) inter + b^2 FN + FP)`` with ``FN = label - inter``,
  ``FP = pred - inter``: the F-beta score ``(1 + b^2) P R / (b^2 P + R)`` written with counts
  (``b = 1``: F1, equal to Dice).

A ratio whose denominator is 0 is NaN (a class absent from both labels and predictions has
IoU NaN; a class absent from the labels has Acc NaN). Means skip NaNs (``np.nanmean``, as
mmseg's ``IoUMetric``). Every value equals mmseg's (``tests/manifests/metrics_mmseg.json``
holds its own output) except one: mmseg computes the F-score from P and R, so a class with
no correct pixel (P = R = 0) or no label pixel (R undefined) gets NaN there and drops out of
its mean F-score, which then exceeds mean Dice; here it is 0 (or 0 / pred = 0), as sklearn's
``f1_score`` gives, and mean F1 equals mean Dice. Over all valid pixels: ``aAcc`` = correct / valid,
and Cohen's ``Kappa = (po - pe) / (1 - pe)`` with ``po = aAcc`` and
``pe = sum(label * pred) / valid^2`` (PaddleSeg's ``metrics.kappa``).

Values are fractions in [0, 1]; :func:`format_table` prints percentages with 2 decimals.
"""
import numpy as np

# per-class metric -> the name of its mean, in the order tables and metrics.json list them
PER_CLASS = (('IoU', 'mIoU'), ('Acc', 'mAcc'), ('Dice', 'mDice'), ('Precision', 'mPrecision'),
             ('Recall', 'mRecall'), ('Fscore', 'mFscore'))
SUMMARY = ('aAcc', 'mIoU', 'mAcc', 'mDice', 'mPrecision', 'mRecall', 'mFscore', 'Kappa')


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


def _ratio(num, den):
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def metrics_from_confusion(cm, beta=1.0):
    """Per-class arrays (``IoU Acc Dice Precision Recall Fscore``; NaN where undefined), their
    NaN-skipping means (``mIoU`` ...), ``aAcc`` and ``Kappa``; all fractions."""
    cm = np.asarray(cm, dtype=np.float64)
    inter = np.diag(cm)
    area_label = cm.sum(axis=1)
    area_pred = cm.sum(axis=0)
    precision = _ratio(inter, area_pred)
    recall = _ratio(inter, area_label)
    b2 = float(beta) ** 2
    fscore = _ratio((1 + b2) * inter, (1 + b2) * inter + b2 * (area_label - inter) + (area_pred - inter))
    out = {
        'IoU': _ratio(inter, area_label + area_pred - inter),
        'Acc': recall,
        'Dice': _ratio(2 * inter, area_label + area_pred),
        'Precision': precision,
        'Recall': recall.copy(),
        'Fscore': fscore,
    }
    for per_class, mean in PER_CLASS:
        out[mean] = _nanmean(out[per_class])
    total = area_label.sum()
    out['aAcc'] = float(inter.sum() / total) if total > 0 else float('nan')
    out['Kappa'] = kappa(cm)
    return out


def kappa(cm):
    """Cohen's kappa of the pixel labels and predictions counted in ``cm`` (NaN if undefined)."""
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    if total <= 0:
        return float('nan')
    po = np.trace(cm) / total
    pe = float(np.sum(cm.sum(axis=0) * cm.sum(axis=1))) / (total * total)
    return float((po - pe) / (1 - pe)) if pe < 1 else float('nan')


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


def pct(v):
    """A fraction as the percentage every table prints: ``'81.36'`` (``'nan'`` if undefined)."""
    return 'nan' if v is None or not np.isfinite(v) else f'{100.0 * v:.2f}'


def format_table(metrics, class_names=None):
    """Per-class table (IoU Acc Dice Precision Recall Fscore) and one summary row (aAcc, the means,
    Kappa), every value in percent with two decimals, like mmseg's tables."""
    from prettytable import PrettyTable
    n = len(metrics['IoU'])
    names = list(class_names) if class_names is not None and len(class_names) == n else [str(i) for i in range(n)]
    cols = [k for k, _ in PER_CLASS if k in metrics and k != 'Recall']  # Recall is Acc: one column
    per_class = PrettyTable()
    per_class.field_names = ['Class'] + cols
    for i, name in enumerate(names):
        per_class.add_row([name] + [pct(metrics[k][i]) for k in cols])
    keys = [k for k in SUMMARY if k in metrics and k != 'mRecall']
    summary = PrettyTable()
    summary.field_names = keys
    summary.add_row([pct(metrics[k]) for k in keys])
    return (f'per class results (Acc = Recall):\n{per_class.get_string()}\n'
            f'Summary (%):\n{summary.get_string()}')
