"""Cross-entropy losses: plain (with ignore index and class weights) and OHEM.

Loss call contract: ``loss(logits [N, C, H, W], label [N, H, W] int64) -> scalar``.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..utils.errors import ConfigError
from ..utils.registry import LOSSES

_EPS = 1e-8


def loss_dtype(logits):
    """float64 for float64 logits (parity checks), float32 otherwise (fp16/bf16 logits included)."""
    return 'float64' if logits.dtype == paddle.float64 else 'float32'


def _pixel_ce(logits, label, ignore_index, weight=None):
    """Per-pixel CE [N, H, W] (0 at ignored pixels) and the valid-pixel mask, in :func:`loss_dtype`."""
    if logits.shape[-2:] != label.shape[-2:] and -1 not in logits.shape[-2:]:
        raise ValueError(f'logits {logits.shape} and label {label.shape} differ in size')
    logits_nhwc = logits.transpose([0, 2, 3, 1])
    lab = label.astype('int64').unsqueeze(-1)
    dtype = loss_dtype(logits)
    if weight is not None:
        weight = weight.astype(dtype)
    loss = F.cross_entropy(logits_nhwc.astype(dtype), lab, weight=weight, ignore_index=ignore_index,
                           reduction='none', axis=-1).squeeze(-1)
    mask = (label != ignore_index).astype(dtype)
    return loss * mask, mask


def _check_weight(weight, name):
    if weight is None:
        return None
    if not isinstance(weight, (list, tuple)) or not all(isinstance(w, (int, float)) for w in weight):
        raise ConfigError(f'{name}.weight: expected a list of per-class numbers, got {weight!r}')
    return paddle.to_tensor(weight, dtype='float32')


@LOSSES.register()
class CrossEntropyLoss(nn.Layer):
    """Pixel-wise cross-entropy.

    Args:
        weight: optional per-class weights (list of num_classes numbers).
        ignore_index: label value that contributes nothing.
        avg_non_ignore: average over non-ignored pixels (PaddleSeg's behaviour; with class
            weights, over their summed weights). ``False`` averages over all pixels, the
            default of mmsegmentation's ``CrossEntropyLoss`` (avg_non_ignore=False).
        use_sigmoid: per-class binary cross-entropy on one-hot labels instead of softmax
            (mmsegmentation's ``use_sigmoid=True``, which its Fast-SCNN config uses); the mean is
            over N*C*H*W elements, or over C * valid pixels with ``avg_non_ignore``.
    """

    def __init__(self, weight=None, ignore_index=255, avg_non_ignore=True, use_sigmoid=False):
        super().__init__()
        self.ignore_index = ignore_index
        self.avg_non_ignore = avg_non_ignore
        self.use_sigmoid = use_sigmoid
        self.weight = _check_weight(weight, 'CrossEntropyLoss')
        if use_sigmoid and weight is not None:
            raise ConfigError('CrossEntropyLoss: class weights are not supported with use_sigmoid')

    def _sigmoid_forward(self, logits, label):
        valid = (label != self.ignore_index)
        safe = paddle.where(valid, label.astype('int64'), paddle.zeros_like(label, dtype='int64'))
        dtype = loss_dtype(logits)
        onehot = F.one_hot(safe, logits.shape[1]).transpose([0, 3, 1, 2]).astype(dtype)
        mask = valid.astype(dtype).unsqueeze(1)
        loss = F.binary_cross_entropy_with_logits(logits.astype(dtype), onehot, reduction='none') * mask
        if self.avg_non_ignore:
            return loss.sum() / (mask.sum() * logits.shape[1] + _EPS)
        return loss.mean()

    def forward(self, logits, label):
        if self.use_sigmoid:
            return self._sigmoid_forward(logits, label)
        loss, mask = _pixel_ce(logits, label, self.ignore_index, self.weight)
        if not self.avg_non_ignore:
            return loss.mean()
        if self.weight is not None:
            safe = paddle.where(mask > 0, label.astype('int64'), paddle.zeros_like(label, dtype='int64'))
            weight = self.weight.astype(mask.dtype)
            denom = (paddle.gather(weight, safe.flatten()).reshape(safe.shape) * mask).sum()
        else:
            denom = mask.sum()
        return loss.sum() / (denom + _EPS)


@LOSSES.register()
class OhemCrossEntropyLoss(nn.Layer):
    """Online hard example mining CE: keep pixels whose ground-truth probability is below
    ``max(thresh, p_k)`` where ``p_k`` is the ``min_kept``-th smallest such probability, and
    average their loss (mmseg's OHEMPixelSampler / PaddleSeg's OhemCrossEntropyLoss).
    """

    def __init__(self, thresh=0.7, min_kept=10000, ignore_index=255, weight=None):
        super().__init__()
        if not 0 < thresh <= 1:
            raise ConfigError(f'OhemCrossEntropyLoss.thresh must be in (0, 1], got {thresh}')
        self.thresh = float(thresh)
        self.min_kept = int(min_kept)
        self.ignore_index = ignore_index
        self.weight = _check_weight(weight, 'OhemCrossEntropyLoss')

    def forward(self, logits, label):
        loss, mask = _pixel_ce(logits, label, self.ignore_index, self.weight)
        with paddle.no_grad():
            prob = F.softmax(logits.astype(loss_dtype(logits)), axis=1)
            safe = paddle.where(mask > 0, label.astype('int64'), paddle.zeros_like(label, dtype='int64'))
            gt_prob = paddle.take_along_axis(prob, safe.unsqueeze(1), axis=1).squeeze(1)
            gt_prob = paddle.where(mask > 0, gt_prob, paddle.ones_like(gt_prob))  # ignored never kept
            flat = gt_prob.flatten()
            n_valid = int(mask.sum())
            threshold = self.thresh
            if n_valid > 0 and self.min_kept > 0:
                k = min(self.min_kept, n_valid) - 1
                kth = paddle.sort(flat)[k]
                threshold = max(threshold, float(kth))
            keep = (gt_prob <= threshold).astype(mask.dtype) * mask
        return (loss * keep).sum() / (keep.sum() + _EPS)
