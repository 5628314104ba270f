"""Metrics against a brute-force per-pixel count (ignore pixels, absent classes), against
mmsegmentation's own values (tests/manifests/metrics_mmseg.json) and a textbook kappa."""
import json
import math
import os

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
    # IoU Acc Dice Precision Fscore of road and car, then aAcc mIoU mAcc mDice mPrecision mFscore Kappa
    assert table.count('100.00') == 2 * 5 + 7
    assert table.count('nan') == 5  # sky: absent everywhere


MANIFEST = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'manifests', 'metrics_mmseg.json')


def test_metrics_equal_mmsegmentation_values():
    with open(MANIFEST) as f:
        cases = json.load(f)['cases']
    assert len(cases) == 3
    for case in cases:
        got = metrics_from_confusion(np.array(case['confusion_matrix']))
        for key, values in case['per_class'].items():
            want = np.array([np.nan if v is None else v for v in values])
            if key == 'Fscore':
                # mmseg: NaN where precision and recall are both 0 or recall undefined; F1 = Dice = 0 there
                odd = np.isnan(want) & np.isfinite(got['Dice'])
                assert odd.sum() == 2 and (got['Fscore'][odd] == 0).all()
                want[odd] = 0.0
                np.testing.assert_allclose(got['Fscore'], got['Dice'], rtol=1e-12, equal_nan=True)
            np.testing.assert_allclose(got[key], want, rtol=1e-12, atol=1e-15, equal_nan=True, err_msg=key)
        for key, value in case['summary'].items():
            if key != 'mFscore':
                assert got[key] == pytest.approx(value, rel=1e-12), key
        assert got['mFscore'] < case['summary']['mFscore']  # mmseg's mean skips the 0-F1 classes


def test_kappa_textbook_and_degenerate():
    # 50 items, two raters: yes/yes 20, yes/no 5, no/yes 10, no/no 15 -> po 0.7, pe 0.5, kappa 0.4
    m = metrics_from_confusion(np.array([[20, 5], [10, 15]]))
    assert m['Kappa'] == pytest.approx(0.4, rel=1e-12)
    assert m['aAcc'] == pytest.approx(0.7)
    assert metrics_from_confusion(np.diag([3, 4, 0]))['Kappa'] == pytest.approx(1.0)
    assert math.isnan(metrics_from_confusion(np.array([[5, 0], [0, 0]]))['Kappa'])  # one class only: pe = 1
    assert math.isnan(metrics_from_confusion(np.zeros((2, 2), int))['Kappa'])


def test_fbeta_weighs_recall():
    # class 0: 8 right, 2 missed (FN), 4 false alarms (FP): P = 8/12, R = 8/10
    cm = np.array([[8, 2], [4, 6]])
    p, r = 8 / 12, 8 / 10
    for beta in (0.5, 1.0, 2.0):
        got = metrics_from_confusion(cm, beta=beta)['Fscore'][0]
        assert got == pytest.approx((1 + beta ** 2) * p * r / (beta ** 2 * p + r), rel=1e-12)
