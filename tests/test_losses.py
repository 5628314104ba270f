"""Losses against numpy brute force."""
import numpy as np
import paddle
import pytest

from zoo.losses.cross_entropy import CrossEntropyLoss, OhemCrossEntropyLoss
from zoo.utils.errors import ConfigError


def _np_ce(logits, label, ignore=255, weight=None):
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    n, c, h, w = logits.shape
    out, ws = np.zeros((n, h, w)), np.zeros((n, h, w))
    for i in range(n):
        for y in range(h):
            for x in range(w):
                t = label[i, y, x]
                if t == ignore:
                    continue
                wt = 1.0 if weight is None else weight[t]
                out[i, y, x] = -wt * logp[i, t, y, x]
                ws[i, y, x] = wt
    return out, ws


@pytest.fixture
def data():
    rng = np.random.RandomState(0)
    logits = rng.randn(2, 4, 5, 6).astype('float32')
    label = rng.randint(0, 4, (2, 5, 6)).astype('int64')
    label[0, :2, :3] = 255
    return logits, label


def test_ce_ignores_and_averages_over_valid(data):
    logits, label = data
    loss = CrossEntropyLoss()(paddle.to_tensor(logits), paddle.to_tensor(label))
    ref, ws = _np_ce(logits, label)
    assert abs(float(loss) - ref.sum() / ws.sum()) < 1e-5
    loss_all = CrossEntropyLoss(avg_non_ignore=False)(paddle.to_tensor(logits), paddle.to_tensor(label))
    assert abs(float(loss_all) - ref.sum() / ref.size) < 1e-5


def test_ce_class_weights(data):
    logits, label = data
    w = [1.0, 2.0, 0.5, 3.0]
    loss = CrossEntropyLoss(weight=w)(paddle.to_tensor(logits), paddle.to_tensor(label))
    ref, ws = _np_ce(logits, label, weight=w)
    assert abs(float(loss) - ref.sum() / ws.sum()) < 1e-5
    with pytest.raises(ConfigError):
        CrossEntropyLoss(weight='heavy')


def test_ohem_keeps_hard_pixels(data):
    logits, label = data
    ref, _ = _np_ce(logits, label)
    valid = label != 255
    p = np.exp(-ref)  # probability of the ground truth
    # thresh high: all valid pixels below it are kept
    loss = OhemCrossEntropyLoss(thresh=0.99, min_kept=1)(paddle.to_tensor(logits), paddle.to_tensor(label))
    keep = valid & (p <= 0.99)
    assert abs(float(loss) - ref[keep].mean()) < 1e-5
    # thresh tiny: exactly the min_kept hardest pixels are kept
    loss = OhemCrossEntropyLoss(thresh=1e-6, min_kept=7)(paddle.to_tensor(logits), paddle.to_tensor(label))
    hardest = np.sort(ref[valid])[::-1][:7]
    assert abs(float(loss) - hardest.mean()) < 1e-5


def test_sigmoid_ce_matches_mmseg_binary_formula(data):
    logits, label = data
    valid = label != 255
    onehot = np.zeros_like(logits)
    for c in range(logits.shape[1]):
        onehot[:, c] = (label == c)
    bce = np.maximum(logits, 0) - logits * onehot + np.log1p(np.exp(-np.abs(logits)))
    bce = bce * valid[:, None]
    loss = CrossEntropyLoss(use_sigmoid=True, avg_non_ignore=False)(paddle.to_tensor(logits), paddle.to_tensor(label))
    assert abs(float(loss) - bce.mean()) < 1e-5
    loss = CrossEntropyLoss(use_sigmoid=True)(paddle.to_tensor(logits), paddle.to_tensor(label))
    assert abs(float(loss) - bce.sum() / (valid.sum() * logits.shape[1])) < 1e-5
