"""FCN heads: mmsegmentation's ``FCNHead`` and ``DepthwiseSeparableFCNHead``.

The module tree matches mmseg 1.x (``mmseg/models/decode_heads/fcn_head.py`` and
``sep_fcn_head.py``): ``convs.<i>`` (ConvModules), optional ``conv_cat`` (conv over the
concatenation of the head's input and the convs' output), ``dropout`` (Dropout2d, as mmseg's
``BaseDecodeHead``) and the 1x1 classifier ``conv_seg``. A head returns logits at its input
feature's resolution; the model resizes them to the image size.

``FCNHead`` is also the auxiliary head of DeepLabV3, DMNet, MCIBI and Fast-SCNN.
"""
import paddle
import paddle.nn as nn

from zoo.models.heads.base import DecodeHead
from zoo.models.layers import BN_MOMENTUM, ConvModule, DepthwiseSeparableConvModule
from zoo.utils.errors import ConfigError
from zoo.utils.registry import HEADS


class _FCNHeadBase(DecodeHead):
    """Conv stack and optional conv_cat; ``_conv`` says which conv module the stack uses."""

    def __init__(self, in_channels, channels, num_classes, num_convs, kernel_size, dilation,
                 concat_input, dropout_ratio, in_index, act, bn_momentum):
        super().__init__(in_channels, channels, num_classes, dropout_ratio, True, in_index)
        if num_convs < 0:
            raise ConfigError(f'num_convs: expected >= 0, got {num_convs}')
        if dilation < 1:
            raise ConfigError(f'dilation: expected >= 1, got {dilation}')
        if num_convs == 0 and in_channels != channels:
            # mmseg uses an Identity here, so conv_seg then sees in_channels features
            raise ConfigError(f'num_convs: 0 needs in_channels == channels, got {in_channels} and {channels}')
        self.concat_input = concat_input
        padding = (kernel_size // 2) * dilation
        convs = [self._conv(in_channels if i == 0 else channels, channels, kernel_size, padding, dilation,
                            act, bn_momentum)
                 for i in range(num_convs)]
        self.convs = nn.Sequential(*convs) if convs else nn.Identity()
        if concat_input:
            # mmseg pads conv_cat with kernel_size // 2 and no dilation
            self.conv_cat = self._conv(in_channels + channels, channels, kernel_size, kernel_size // 2, 1,
                                       act, bn_momentum)
        else:
            self.conv_cat = None
        self.add_classifier()

    def _conv(self, cin, cout, kernel_size, padding, dilation, act, bn_momentum):
        raise NotImplementedError

    def forward_feature(self, inputs):
        x = self.select_input(inputs)
        feat = self.convs(x)
        if self.conv_cat is not None:
            feat = self.conv_cat(paddle.concat([x, feat], axis=1))
        return feat


@HEADS.register()
class FCNHead(_FCNHeadBase):
    """``num_convs`` conv-BN-act layers (+ optional conv_cat), dropout, 1x1 classifier.

    Args:
        in_channels: channels of the selected input feature.
        channels: width of the head's convs.
        num_classes: classifier outputs.
        num_convs: number of ConvModules (0 keeps the input as it is, as mmseg).
        kernel_size, dilation: of each conv in ``convs`` (padding keeps the size).
        concat_input: concatenate the input with the convs' output and fuse with ``conv_cat``.
        dropout_ratio: Dropout2D probability before ``conv_seg`` (0 disables it).
        in_index: which feature to take when called with a list of backbone features.
        act: activation of each ConvModule (see ``layers.make_act``).
        bn_momentum: Paddle BN momentum (``layers.torch_bn_momentum`` of the reference's).
    """

    def __init__(self, in_channels, channels, num_classes, num_convs=2, kernel_size=3, dilation=1,
                 concat_input=True, dropout_ratio=0.1, in_index=-1, act='relu', bn_momentum=BN_MOMENTUM):
        super().__init__(in_channels, channels, num_classes, num_convs, kernel_size, dilation,
                         concat_input, dropout_ratio, in_index, act, bn_momentum)

    def _conv(self, cin, cout, kernel_size, padding, dilation, act, bn_momentum):
        return ConvModule(cin, cout, kernel_size, padding=padding, dilation=dilation, act=act,
                          bn_momentum=bn_momentum)


@HEADS.register()
class DepthwiseSeparableFCNHead(_FCNHeadBase):
    """FCNHead with depthwise-separable convs: Fast-SCNN's classifier (paper Sec. 3.2.4).

    Each conv is a ``DepthwiseSeparableConvModule`` (``depthwise_conv``, ``pointwise_conv``).
    As in mmseg 1.x (``dw_act_cfg=None``) the depthwise conv has BN but no activation
    (``dw_act=None``); the pointwise conv has BN + ``act``. mmseg builds these convs without
    dilation, so ``dilation`` must stay 1.
    """

    def __init__(self, in_channels, channels, num_classes, num_convs=2, kernel_size=3, dilation=1,
                 concat_input=True, dropout_ratio=0.1, in_index=-1, act='relu', dw_act=None,
                 bn_momentum=BN_MOMENTUM):
        if dilation != 1:
            raise ConfigError(f'dilation: DepthwiseSeparableFCNHead takes 1 only (as mmseg), got {dilation}')
        self._dw_act = dw_act
        super().__init__(in_channels, channels, num_classes, num_convs, kernel_size, dilation,
                         concat_input, dropout_ratio, in_index, act, bn_momentum)

    def _conv(self, cin, cout, kernel_size, padding, dilation, act, bn_momentum):
        return DepthwiseSeparableConvModule(cin, cout, kernel_size, padding=padding, dw_act=self._dw_act,
                                            pw_act=act, bn_momentum=bn_momentum)
