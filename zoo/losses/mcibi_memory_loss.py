"""MCIBI's memory loss (sssegmentation ``MCIBI.calculatememoryloss``): ``decoder_stage2``
classifies every memory entry, trained towards the entry's own class (``zoo/models/mcibi.py``,
``use_memory_loss``; the ADE20K configs)."""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..utils.registry import LOSSES
from .cross_entropy import loss_dtype


@LOSSES.register()
class MCIBIMemoryLoss(nn.Layer):
    """Cross-entropy of ``decoder_stage2`` on the memory entries against their own classes
    (sssegmentation ``MCIBI.calculatememoryloss``); takes MCIBI's 4th training output and
    ignores the pixel labels. An empty input (before the start iteration) gives 0."""

    def forward(self, logits, label=None):
        n, k = logits.shape[0], logits.shape[1]
        dtype = loss_dtype(logits)
        if n == 0:
            return paddle.zeros([], dtype)
        per_class = n // k
        target = paddle.arange(k, dtype='int64').unsqueeze(1).expand([k, per_class]).reshape([-1, 1])
        return F.cross_entropy(logits.reshape([n, k]).astype(dtype), target, reduction='mean')
