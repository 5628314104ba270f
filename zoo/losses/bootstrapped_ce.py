"""Bootstrapped cross-entropy (RegSeg's ``BootstrappedCE``, reference ``losses.py``).

Per-pixel cross-entropy; if more than K pixels have a loss above ``threshold`` the mean is taken
over those pixels, otherwise over the K largest losses. RegSeg uses it for its train+val
Cityscapes run with K = batch * crop_h * crop_w / 16 and threshold 0.3; here K is computed
from the batch the loss receives (``N*H*W // min_K_divisor``), which is the same number for a
fixed crop size. Ignored pixels have zero loss (they can still fill the top-K, as in the
reference).
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from ..utils.errors import ConfigError
from ..utils.registry import LOSSES


@LOSSES.register()
class BootstrappedCrossEntropyLoss(nn.Layer):
    """``loss(logits [N, C, H, W], label [N, H, W] int64) -> scalar``.

    Args:
        min_K_divisor: K = N*H*W // min_K_divisor (RegSeg: 16).
        threshold: pixels with a loss above it are "hard" (RegSeg: 0.3).
        ignore_index: label value that contributes no loss.
    """

    def __init__(self, min_K_divisor=16, threshold=0.3, ignore_index=255):
        super().__init__()
        if min_K_divisor < 1:
            raise ConfigError(f'BootstrappedCrossEntropyLoss.min_K_divisor must be >= 1, got {min_K_divisor}')
        self.min_K_divisor = int(min_K_divisor)
        self.threshold = float(threshold)
        self.ignore_index = ignore_index

    def forward(self, logit, label):
        if label.ndim == 4:
            label = label.squeeze(1)
        pixel_losses = F.cross_entropy(logit.transpose([0, 2, 3, 1]), label.astype('int64'),
                                       ignore_index=self.ignore_index, reduction='none', axis=-1)
        pixel_losses = pixel_losses.reshape([-1])
        k = max(1, int(pixel_losses.shape[0]) // self.min_K_divisor)
        hard = pixel_losses > self.threshold
        if int(hard.astype('int64').sum()) > k:
            return paddle.masked_select(pixel_losses, hard).mean()
        return paddle.topk(pixel_losses, k)[0].mean()
