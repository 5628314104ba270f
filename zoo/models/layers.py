"""Small building blocks shared by the models: conv modules, the one resize, weight inits.

Names follow mmcv's ``ConvModule`` (``conv``, ``bn``, ``activate``) and
``DepthwiseSeparableConvModule`` (``depthwise_conv``, ``pointwise_conv``), so checkpoints
trained with mmsegmentation map onto these layers by renaming BN statistics only;
:func:`conv_bn_act` is the ``Sequential(conv, BN, act)`` (indices 0, 1, 2) that
sssegmentation and HRNet use.

BN momentum: Paddle's running average is ``m * running + (1 - m) * batch``, PyTorch's is
``(1 - m) * running + m * batch``; so Paddle momentum = 1 - torch momentum (torch 0.1 -> 0.9).
"""
import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

# torch momentum 0.1, eps 1e-5: the default of torch and mmcv.
BN_MOMENTUM = 0.9
BN_EPS = 1e-5


def torch_bn_momentum(m):
    """Paddle momentum for a reference written with torch momentum ``m``."""
    return 1.0 - m


def batch_norm(channels, momentum=BN_MOMENTUM, eps=BN_EPS):
    """BatchNorm2D with torch's defaults (see the module docstring for the momentum)."""
    return nn.BatchNorm2D(channels, momentum=momentum, epsilon=eps)


def make_act(act):
    """'relu' | 'relu6' | 'leakyrelu' | 'leakyrelu:<slope>' | 'hardswish' | 'sigmoid' | 'gelu' | None."""
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
        self.bn = batch_norm(out_channels, bn_momentum, bn_eps) if norm else None
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


def conv_bn_act(in_channels, out_channels, kernel_size=1, stride=1, padding=None, dilation=1, act='relu',
                bn_momentum=BN_MOMENTUM):
    """``Sequential(Conv2D(bias=False), BN[, act])``: parameters ``0.weight``, ``1.*``
    (sssegmentation's and HRNet's layout). ``padding`` defaults to ``kernel_size // 2``."""
    if padding is None:
        padding = kernel_size // 2
    layers = [nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                        bias_attr=False),
              batch_norm(out_channels, bn_momentum)]
    act = make_act(act)
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


# -- the one resize ------------------------------------------------------------------

def resize(x, size=None, scale_factor=None, mode='bilinear', align_corners=False):
    """The one resize of feature maps and logits in the zoo (bilinear by default).

    Bilinear with ``align_corners=True`` is computed as two matrix products
    (:func:`bilinear_align_corners`): Paddle Inference 3.2.2's oneDNN ``bilinear_interp``
    ignores align_corners=True (a plain 8x upsample differs by ~1.5 with oneDNN on, 0 with it
    off), so ``F.interpolate`` there would export a wrong program.
    """
    if mode == 'bilinear' and align_corners:
        if size is None:
            size = (paddle.shape(x)[2:].astype('float32') * float(scale_factor)).astype('int32')
        return bilinear_align_corners(x, size)
    if size is not None:
        size = [int(s) for s in size]
    return F.interpolate(x, size=size, scale_factor=scale_factor, mode=mode,
                         align_corners=align_corners if mode in ('bilinear', 'bicubic') else None)


def _align_corners_matrix(out_len, in_len):
    """[out_len, in_len] weights of 1-D linear interpolation with align_corners=True
    (source position ``i * (in - 1) / (out - 1)``), built from arange and comparisons only."""
    out_f = out_len.astype('float32')
    in_f = in_len.astype('float32')
    src = paddle.arange(out_len, dtype='float32') * (in_f - 1) / paddle.maximum(out_f - 1, paddle.ones_like(out_f))
    lo = paddle.floor(src)
    frac = (src - lo).unsqueeze(1)
    hi = paddle.minimum(lo + 1, in_f - 1)
    cols = paddle.arange(in_len, dtype='float32').unsqueeze(0)
    return ((cols == lo.unsqueeze(1)).astype('float32') * (1 - frac)
            + (cols == hi.unsqueeze(1)).astype('float32') * frac)


def bilinear_align_corners(x, size):
    """Bilinear resize with align_corners=True as two matmuls (rows, then columns); equals
    ``F.interpolate(..., mode='bilinear', align_corners=True)`` within 3e-6.

    The input is flattened to [N*C, H, W] first: a 4-D matmul right after oneDNN convs read
    the conv output's layout wrongly (measured, Paddle Inference 3.2.2).
    """
    if not isinstance(size, paddle.Tensor):
        size = paddle.to_tensor([int(s) for s in size], dtype='int32')
    shape = paddle.shape(x)
    rows = _align_corners_matrix(size[0], shape[2]).astype(x.dtype)  # [H', H]
    cols = _align_corners_matrix(size[1], shape[3]).astype(x.dtype)  # [W', W]
    y = x.reshape([-1, shape[2], shape[3]])
    y = paddle.matmul(paddle.matmul(rows, y), cols, transpose_y=True)
    return y.reshape([shape[0], shape[1], size[0], size[1]])


def input_hw(x):
    """(H, W) of an NCHW tensor that stays symbolic under to_static export."""
    return paddle.shape(x)[2:]


# -- weight initialisation of the references ------------------------------------------

def kaiming_init(convs):
    """mmcv's ConvModule init: Kaiming-normal weights (fan_out, ReLU gain), zero bias."""
    for conv in convs:
        nn.initializer.KaimingNormal(nonlinearity='relu', mode='fan_out')(conv.weight)
        if conv.bias is not None:
            nn.initializer.Constant(0.0)(conv.bias)


def init_conv_modules(layer):
    """mmcv's own init of every :class:`ConvModule` in ``layer``: Kaiming-normal conv, identity BN."""
    modules = [m for m in layer.sublayers(include_self=True) if isinstance(m, ConvModule)]
    kaiming_init([m.conv for m in modules])
    reset_norms([m.bn for m in modules if m.bn is not None])


def reset_norms(norms):
    """Norm layers to the identity: scale 1, shift 0."""
    for norm in norms:
        nn.initializer.Constant(1.0)(norm.weight)
        nn.initializer.Constant(0.0)(norm.bias)


def torch_default_init(layer):
    """PyTorch's default Conv2d init (kaiming_uniform a=sqrt(5): U(+-1/sqrt(fan_in)) for weight
    and bias), for references that keep it (RegSeg trains from scratch with it; sssegmentation's
    MCIBI head keeps it); Paddle's default (Xavier, zero bias) is a different starting point."""
    for m in layer.sublayers(include_self=True):
        if isinstance(m, nn.Conv2D):
            fan_in = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
            bound = 1.0 / math.sqrt(fan_in)
            nn.initializer.Uniform(-bound, bound)(m.weight)
            if m.bias is not None:
                nn.initializer.Uniform(-bound, bound)(m.bias)
