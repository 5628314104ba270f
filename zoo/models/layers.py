"""Small building blocks shared by the models.

Names follow mmcv's ``ConvModule`` (``conv``, ``bn``, ``activate``) and
``DepthwiseSeparableConvModule`` (``depthwise_conv``, ``pointwise_conv``), so checkpoints
trained with mmsegmentation map onto these layers by renaming BN statistics only.

BN momentum: Paddle's running average is ``m * running + (1 - m) * batch``, PyTorch's is
``(1 - m) * running + m * batch``; so Paddle momentum = 1 - torch momentum (torch 0.1 -> 0.9).
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

# torch momentum 0.1, eps 1e-5: the default of torch and mmcv.
BN_MOMENTUM = 0.9
BN_EPS = 1e-5


def torch_bn_momentum(m):
    """Paddle momentum for a reference written with torch momentum ``m``."""
    return 1.0 - m


def make_act(act):
    """'relu' | 'relu6' | 'leakyrelu' | 'leakyrelu:<slope>' | 'hardswish' | 'sigmoid' | None."""
    if act is None or act is False:
        return None
    if isinstance(act, nn.Layer):
        return act
    name, _, arg = str(act).lower().partition(':')
    if name == 'relu':
        return nn.ReLU()
    if name == 'relu6':
        return nn.ReLU6()
    if name == 'leakyrelu':
        return nn.LeakyReLU(float(arg) if arg else 0.01)
    if name == 'hardswish':
        return nn.Hardswish()
    if name == 'sigmoid':
        return nn.Sigmoid()
    if name == 'gelu':
        return nn.GELU()
    raise ValueError(f'unknown activation {act!r}')


class ConvModule(nn.Layer):
    """conv -> BN -> activation (each optional), as mmcv's ConvModule.

    ``bias='auto'`` gives the conv a bias only when there is no norm layer.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias='auto', norm=True, act='relu', bn_momentum=BN_MOMENTUM, bn_eps=BN_EPS):
        super().__init__()
        if bias == 'auto':
            bias = not norm
        self.conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                              dilation=dilation, groups=groups, bias_attr=None if bias else False)
        self.bn = nn.BatchNorm2D(out_channels, momentum=bn_momentum, epsilon=bn_eps) if norm else None
        self.activate = make_act(act)

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.activate is not None:
            x = self.activate(x)
        return x


class DepthwiseSeparableConvModule(nn.Layer):
    """Depthwise conv module then pointwise (1x1) conv module, each conv -> BN -> act."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 dw_act='relu', pw_act='relu', bn_momentum=BN_MOMENTUM, bn_eps=BN_EPS):
        super().__init__()
        self.depthwise_conv = ConvModule(in_channels, in_channels, kernel_size, stride, padding, dilation,
                                         groups=in_channels, act=dw_act, bn_momentum=bn_momentum, bn_eps=bn_eps)
        self.pointwise_conv = ConvModule(in_channels, out_channels, 1, act=pw_act,
                                         bn_momentum=bn_momentum, bn_eps=bn_eps)

    def forward(self, x):
        return self.pointwise_conv(self.depthwise_conv(x))


def resize(x, size=None, scale_factor=None, mode='bilinear', align_corners=False):
    """The one resize of feature maps/logits used across the zoo (bilinear by default)."""
    if size is not None:
        size = [int(s) for s in size]
    return F.interpolate(x, size=size, scale_factor=scale_factor, mode=mode,
                         align_corners=align_corners if mode in ('bilinear', 'bicubic') else None)


def upsample_outputs(logits, size, align_corners=False):
    """Resize every head's logits to ``size`` (H, W): the model's output convention."""
    return [resize(x, size, align_corners=align_corners) for x in logits]


def input_hw(x):
    """(H, W) of an NCHW tensor that stays symbolic under to_static export."""
    return paddle.shape(x)[2:]
