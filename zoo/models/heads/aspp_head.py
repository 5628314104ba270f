"""DeepLabV3's head: Atrous Spatial Pyramid Pooling (Chen et al., arXiv:1706.05587, Sec. 3.3).

Branches in parallel on the backbone's last feature: an image-pooling branch (global average
pool, 1x1 conv, upsampled back), a 1x1 conv (rate 1) and 3x3 atrous convs at the other
rates; their concatenation is projected by ``bottleneck``, then dropout and the 1x1
classifier ``conv_seg``.

Names follow mmseg's ``ASPPHead`` (``image_pool.1``, ``aspp_modules.<i>``, ``bottleneck``,
``conv_seg``); the concatenation order is mmseg's too (image pool first). The options
that tell PaddleSeg's ``DeepLabV3Head``/``ASPPModule`` apart from mmseg's:

=====================  ==========================  =========================
option                 PaddleSeg 2.8 DeepLabV3     mmseg ASPPHead (R-50-D8)
=====================  ==========================  =========================
channels               256                         512
bottleneck_kernel      1                           3
conv_bias              True (branches, projection) False
channel_dropout        False (element-wise 0.1)    True (Dropout2d 0.1)
image-pool position    last (importer permutes)    first
=====================  ==========================  =========================
"""
import paddle
import paddle.nn as nn

from zoo.models.heads.base import DecodeHead
from zoo.models.layers import BN_MOMENTUM, ConvModule, input_hw, resize
from zoo.utils.registry import HEADS


class ASPPPooling(nn.Sequential):
    """Image-level features: global average pool then 1x1 ConvModule (no bias)."""

    def __init__(self, in_channels, channels, bn_momentum=BN_MOMENTUM):
        super().__init__(nn.AdaptiveAvgPool2D(1), ConvModule(in_channels, channels, 1, bn_momentum=bn_momentum))


def aspp_branch(in_channels, channels, rate, bias=False, bn_momentum=BN_MOMENTUM):
    """Rate 1: a 1x1 conv; otherwise a 3x3 conv with dilation = padding = rate."""
    if rate == 1:
        return ConvModule(in_channels, channels, 1, bias=bias, bn_momentum=bn_momentum)
    return ConvModule(in_channels, channels, 3, padding=rate, dilation=rate, bias=bias, bn_momentum=bn_momentum)


@HEADS.register()
class ASPPHead(DecodeHead):
    """ASPP + projection + dropout + classifier; returns logits at the feature's resolution.

    Args:
        in_channels: channels of the input feature (2048 for ResNet-50/101).
        channels: width of every branch and of the projection.
        num_classes: classifier outputs.
        dilations: ASPP rates (1 gives the 1x1 branch); (1, 12, 24, 36) at output stride 8.
        bottleneck_kernel: kernel of the projection conv (1 PaddleSeg, 3 mmseg).
        conv_bias: bias in the branch and projection convs (PaddleSeg's ConvBNReLU has one).
        dropout_ratio: dropout before ``conv_seg`` (0 disables it).
        channel_dropout: Dropout2D (mmseg) instead of element-wise dropout (PaddleSeg).
        in_index: which backbone feature to take when given a list.
        align_corners: of the image-pool upsampling.
    """

    def __init__(self, in_channels, channels, num_classes, dilations=(1, 6, 12, 18), bottleneck_kernel=1,
                 conv_bias=False, dropout_ratio=0.1, channel_dropout=True, in_index=-1, align_corners=False,
                 bn_momentum=BN_MOMENTUM):
        super().__init__(in_channels, channels, num_classes, dropout_ratio, channel_dropout, in_index)
        self.align_corners = align_corners
        self.image_pool = ASPPPooling(in_channels, channels, bn_momentum)
        self.aspp_modules = nn.LayerList([aspp_branch(in_channels, channels, d, conv_bias, bn_momentum)
                                          for d in dilations])
        self.bottleneck = ConvModule((len(dilations) + 1) * channels, channels, bottleneck_kernel,
                                     padding=bottleneck_kernel // 2, bias=conv_bias, bn_momentum=bn_momentum)
        self.add_classifier()

    def aspp(self, x):
        """Concatenated branch outputs (image pool first), before the projection."""
        pooled = resize(self.image_pool(x), input_hw(x), align_corners=self.align_corners)
        return paddle.concat([pooled] + [branch(x) for branch in self.aspp_modules], axis=1)

    def forward_feature(self, inputs):
        return self.bottleneck(self.aspp(self.select_input(inputs)))
