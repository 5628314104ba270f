"""Metrics against a brute-force per-pixel count (ignore pixels, absent classes)."""
import math

import numpy as np
import pytest

from zoo.engine.metrics import ConfusionMatrix, confusion_matrix, format_table, metrics_from_confusion


def brute_force(preds, labels, num_classes, ignore_index):
    """IoU/Acc by counting pixels class by class, with plain Python sums."""
    inter = [0] * num_classes
    n_label = [0] * num_classes
    n_pred = [0] * num_classes
    for pred, label in zip(preds, labels):
        for p, t in zip(pred.ravel().tolist(), label.ravel().tolist()):
            if t == ignore_index:
                continue
            n_label[t] += 1
            n_pred[p] += 1
            inter[t] += p == t
    iou, acc = [], []
    for c in range(num_classes):
        union = n_label[c] + n_pred[c] - inter[c]
        iou.append(inter[c] / union if union else math.nan)
        acc.append(inter[c] / n_label[c] if n_label[c] else math.nan)
    valid_iou = [v for v in iou if not math.isnan(v)]
    valid_acc = [v for v in acc if not math.isnan(v)]
    return {'IoU': iou, 'Acc': acc, 'mIoU': sum(valid_iou) / len(valid_iou), 'mAcc': sum(valid_acc) / len(valid_acc),
            'aAcc': sum(inter) / sum(n_label)}


def make_case(seed, num_classes=6, ignore_index=255):
    rng = np.random.default_rng(seed)
    preds, labels = [], []
    for shape in ((7, 9), (5, 4), (12, 3)):
        label = rng.integers(0, 4, shape)  # classes 4, 5 never in the labels
        label[rng.random(shape) < 0.2] = ignore_index
        pred = rng.integers(0, 5, shape)  # class 5 never predicted either -> NaN IoU
        preds.append(pred)
        labels.append(label)
    return preds, labels


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_metrics_match_brute_force(seed):
    preds, labels = make_case(seed)
    cm = ConfusionMatrix(6, ignore_index=255)
    for p, t in zip(preds, labels):
        cm.update(p, t)
    got = cm.compute()
    want = brute_force(preds, labels, 6, 255)
    np.testing.assert_allclose(got['IoU'], want['IoU'], rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(got['Acc'], want['Acc'], rtol=1e-12, equal_nan=True)
    for k in ('mIoU', 'mAcc', 'aAcc'):
        assert got[k] == pytest.approx(want[k], rel=1e-12)
    # class 4: predicted but never labelled -> IoU 0, Acc undefined; class 5: absent everywhere
    assert got['IoU'][4] == 0.0 and math.isnan(got['Acc'][4])
    assert math.isnan(got['IoU'][5]) and math.isnan(got['Acc'][5])


def test_confusion_matrix_layout_and_ignore():
    label = np.array([[0, 1, 255], [2, 2, 1]])
    pred = np.array([[0, 2, 1], [2, 0, 1]])
    cm = confusion_matrix(pred, label, 3, ignore_index=255)
    want = np.zeros((3, 3), int)
    want[0, 0] = 1  # rows = label, columns = prediction
    want[1, 2] = 1
    want[1, 1] = 1
    want[2, 2] = 1
    want[2, 0] = 1
    np.testing.assert_array_equal(cm, want)
    assert cm.sum() == 5  # the ignored pixel is not counted


def test_perfect_prediction_and_table():
    label = np.array([[0, 0, 1], [1, 255, 0]])
    m = metrics_from_confusion(confusion_matrix(label.clip(0, 1), label, 3, 255))
    assert m['mIoU'] == 1.0 and m['aAcc'] == 1.0 and math.isnan(m['IoU'][2])
    table = format_table(m, ['road', 'car', 'sky'])
    assert 'road' in table and '100.00' in table and 'nan' in table
    assert table.count('100.00') == 2 + 2 + 3  # IoU+Acc of road and car, then aAcc mIoU mAcc
