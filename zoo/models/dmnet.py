"""DMNet: Dynamic Multi-scale Filters for Semantic Segmentation (He, Deng, Qiao, ICCV 2019).

The decode head (paper Sec. 3, Fig. 2) runs one Dynamic Convolutional Module (DCM) per
filter size k in (1, 3, 5, 7) on the last backbone feature. Each DCM

1. generates a k x k filter **per sample and channel** from the input itself
   (adaptive average pooling to k x k, then a 1x1 conv ``filter_gen_conv``),
2. reduces the input with a 1x1 ConvModule (``input_redu_conv``),
3. convolves the reduced feature of each sample with that sample's filters (a depthwise
   convolution whose weights differ per sample), then BN (``norm``) and ReLU
   (``activate``), optionally followed by a 1x1 ``fusion_conv``.

``DMHead`` concatenates its input with the DCM outputs and applies a 3x3 ``bottleneck``,
dropout and the classifier ``conv_seg``. The segmentor adds mmseg's auxiliary ``FCNHead``
on stage 3 (loss weight 0.4 in the configs).

The module tree follows mmsegmentation 1.x (``mmseg/models/decode_heads/dm_head.py`` and
``EncoderDecoder``: ``backbone.*``, ``decode_head.*``, ``auxiliary_head.*``), so importing an
mmseg checkpoint renames BN statistics only (:func:`mmseg_dmnet_to_ours`).
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from zoo.utils.checkpoint import load_pretrained
from zoo.utils.errors import ConfigError
from zoo.utils.registry import HEADS, MODELS

from .backbones.resnet import mmseg_resnet_to_ours
from .convert import register_importer, torch_to_paddle_names
from .heads.fcn_head import FCNHead
from .layers import BN_EPS, BN_MOMENTUM, ConvModule, input_hw, upsample_outputs


def same_padding(kernel_size):
    """[top, bottom, left, right] keeping H, W for a stride-1 conv.

    An even kernel is padded one more at the top/left, as mmseg's DCM (``F.pad`` with
    ``(pad + 1, pad, pad + 1, pad)``).
    """
    pad = (kernel_size - 1) // 2
    extra = (kernel_size - 1) % 2
    return [pad + extra, pad, pad + extra, pad]


def per_sample_depthwise_conv(x, filters, padding):
    """Depthwise conv of each sample with its own filters.

    ``x`` [N, C, H, W], ``filters`` [N, C, k, k], ``padding`` [top, bottom, left, right]
    -> [N, C, H', W'].

    With a known batch size (dygraph, or a static graph with a fixed batch) this is the
    reference's formulation, :func:`depthwise_conv_grouped_over_batch`. A grouped conv needs
    its group count when the graph is built, so with a symbolic batch (an export with a
    dynamic batch) the same product is computed by :func:`depthwise_conv_grouped_over_channels`.
    """
    n = x.shape[0]
    if isinstance(n, int) and n > 0:
        return depthwise_conv_grouped_over_batch(x, filters, padding)
    return depthwise_conv_grouped_over_channels(x, filters, padding)


def depthwise_conv_grouped_over_batch(x, filters, padding):
    """One conv over ``[1, N*C, H, W]`` grouped N*C times (mmseg's DCM); needs a static N."""
    n, c, k = x.shape[0], x.shape[1], filters.shape[-1]
    hw = paddle.shape(x)[2:]
    out = F.conv2d(x.reshape([1, n * c, hw[0], hw[1]]), filters.reshape([n * c, 1, k, k]),
                   padding=padding, groups=n * c)
    out_hw = paddle.shape(out)[2:]
    return out.reshape([n, c, out_hw[0], out_hw[1]])


def depthwise_conv_grouped_over_channels(x, filters, padding):
    """The same product as a conv grouped over the C channels, for any (symbolic) batch N.

    Group c sees the N samples of channel c (``[1, C*N, H, W]``) and its ``[N, N, k, k]``
    weight is diagonal in the samples: sample n's filter on the diagonal, zeros elsewhere.
    The zeros add exact zeros, so the result equals the grouped-over-batch form; it costs
    N times the (small) depthwise work.
    """
    c, k = x.shape[1], filters.shape[-1]
    shape = paddle.shape(x)
    n, h, w = shape[0], shape[2], shape[3]
    x_cn = x.transpose([1, 0, 2, 3]).reshape([1, -1, h, w])  # channel index c * N + n
    idx = paddle.arange(n)
    # the identity as a comparison of aranges (paddle2onnx has no converter for pd_op.eye)
    eye = (idx.unsqueeze(1) == idx.unsqueeze(0)).astype(x.dtype).reshape([1, n, n, 1, 1])
    weight = (filters.transpose([1, 0, 2, 3]).unsqueeze(2) * eye).reshape([-1, n, k, k])
    out = F.conv2d(x_cn, weight, padding=padding, groups=c)
    out_hw = paddle.shape(out)[2:]
    return out.reshape([c, n, out_hw[0], out_hw[1]]).transpose([1, 0, 2, 3])


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


def resize_align_corners(x, size):
    """Bilinear resize with align_corners=True as two matmuls (rows, then columns).

    Equals ``F.interpolate(..., mode='bilinear', align_corners=True)``; written out because
    Paddle Inference 3.2.2's oneDNN ``bilinear_interp`` ignores align_corners=True (measured: a
    plain 8x upsample differs by ~1.5 with oneDNN on, 0 with it off), and the 769x769 configs
    use align_corners=True. The input is flattened to [N*C, H, W] first: a 4-D matmul right
    after oneDNN convs read the conv output's layout wrongly (measured, same version).
    """
    shape = paddle.shape(x)
    rows = _align_corners_matrix(size[0], shape[2]).astype(x.dtype)  # [H', H]
    cols = _align_corners_matrix(size[1], shape[3]).astype(x.dtype)  # [W', W]
    y = x.reshape([-1, shape[2], shape[3]])
    y = paddle.matmul(paddle.matmul(rows, y), cols, transpose_y=True)
    return y.reshape([shape[0], shape[1], size[0], size[1]])


def _kaiming_fan_out(layer):
    """mmcv ConvModule's init: Kaiming-normal (fan_out, ReLU) conv weights, zero bias."""
    nn.initializer.KaimingNormal(nonlinearity='relu', mode='fan_out')(layer.weight)
    if layer.bias is not None:
        nn.initializer.Constant(0.0)(layer.bias)


def _init_conv_modules(layer):
    for m in layer.sublayers(include_self=True):
        if isinstance(m, ConvModule):
            _kaiming_fan_out(m.conv)
            if m.bn is not None:
                nn.initializer.Constant(1.0)(m.bn.weight)
                nn.initializer.Constant(0.0)(m.bn.bias)


class DCM(nn.Layer):
    """Dynamic Convolutional Module for one filter size (mmseg names).

    Args:
        filter_size: k of the generated k x k filters.
        fusion: add a 1x1 ConvModule (``fusion_conv``) after BN + ReLU.
        in_channels: channels of the input feature.
        channels: channels of the reduced feature (one generated filter per channel).
        bn_momentum: Paddle BN momentum.
    """

    def __init__(self, filter_size, fusion, in_channels, channels, bn_momentum=BN_MOMENTUM):
        super().__init__()
        self.filter_size = filter_size
        self.fusion = fusion
        self.padding = same_padding(filter_size)
        self.filter_gen_conv = nn.Conv2D(in_channels, channels, 1)
        self.input_redu_conv = ConvModule(in_channels, channels, 1, bn_momentum=bn_momentum)
        self.norm = nn.BatchNorm2D(channels, momentum=bn_momentum, epsilon=BN_EPS)
        self.activate = nn.ReLU()
        self.fusion_conv = ConvModule(channels, channels, 1, bn_momentum=bn_momentum) if fusion else None
        # a plain torch Conv2d in the reference: its default init U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        bound = in_channels ** -0.5
        nn.initializer.Uniform(-bound, bound)(self.filter_gen_conv.weight)
        nn.initializer.Uniform(-bound, bound)(self.filter_gen_conv.bias)

    def forward(self, x):
        filters = self.filter_gen_conv(F.adaptive_avg_pool2d(x, self.filter_size))
        out = per_sample_depthwise_conv(self.input_redu_conv(x), filters, self.padding)
        out = self.activate(self.norm(out))
        if self.fusion_conv is not None:
            out = self.fusion_conv(out)
        return out


@HEADS.register()
class DMHead(nn.Layer):
    """DMNet's decode head: [input, DCM_k(input) for k in filter_sizes] -> 3x3 bottleneck -> classifier.

    Args:
        in_channels: channels of the input feature (2048 for ResNet-50/101).
        channels: width of each DCM and of the bottleneck (512).
        num_classes: classifier outputs.
        filter_sizes: generated filter sizes, one DCM each.
        fusion: 1x1 fusion conv at the end of each DCM (off in the paper's configs).
        dropout_ratio: Dropout2D probability before ``conv_seg``.
        in_index: which feature to take when called with a list of backbone features.
        bn_momentum: Paddle BN momentum.
    """

    def __init__(self, in_channels, channels, num_classes, filter_sizes=(1, 3, 5, 7), fusion=False,
                 dropout_ratio=0.1, in_index=-1, bn_momentum=BN_MOMENTUM):
        super().__init__()
        if not filter_sizes or any(int(k) < 1 for k in filter_sizes):
            raise ConfigError(f'DMHead.filter_sizes: expected a non-empty list of positive ints, got {filter_sizes!r}')
        self.in_index = in_index
        self.filter_sizes = [int(k) for k in filter_sizes]
        self.dcm_modules = nn.LayerList([DCM(k, fusion, in_channels, channels, bn_momentum)
                                         for k in self.filter_sizes])
        self.bottleneck = ConvModule(in_channels + len(self.filter_sizes) * channels, channels, 3, padding=1,
                                     bn_momentum=bn_momentum)
        self.dropout = nn.Dropout2D(dropout_ratio) if dropout_ratio > 0 else None
        self.conv_seg = nn.Conv2D(channels, num_classes, 1)
        _init_conv_modules(self)
        for dcm in self.dcm_modules:
            nn.initializer.Constant(1.0)(dcm.norm.weight)
            nn.initializer.Constant(0.0)(dcm.norm.bias)
        # mmseg BaseDecodeHead.init_cfg: conv_seg ~ N(0, 0.01), bias 0
        nn.initializer.Normal(0.0, 0.01)(self.conv_seg.weight)
        nn.initializer.Constant(0.0)(self.conv_seg.bias)

    def forward(self, inputs):
        x = inputs[self.in_index] if isinstance(inputs, (list, tuple)) else inputs
        feats = [x] + [dcm(x) for dcm in self.dcm_modules]
        out = self.bottleneck(paddle.concat(feats, axis=1))
        if self.dropout is not None:
            out = self.dropout(out)
        return self.conv_seg(out)


@MODELS.register()
class DMNet(nn.Layer):
    """DMNet segmentor: backbone -> DMHead (+ auxiliary FCNHead when training).

    Args:
        num_classes: number of classes.
        backbone: a built backbone returning a list of stage features with ``feat_channels``
            (e.g. ``ResNetV1c`` "R-50-D8": strides [1, 2, 1, 1], dilations [1, 1, 2, 4],
            contract_dilation true).
        backbone_indices: [auxiliary input, decode input] indices into the backbone's outputs.
        channels: DMHead width.
        filter_sizes: DCM filter sizes.
        fusion: DCM fusion conv.
        dropout_ratio: of both heads.
        enable_auxiliary_loss: build the auxiliary FCNHead (a second training output).
        aux_channels: width of the auxiliary FCNHead (one 3x3 conv, no input concat, as mmseg).
        align_corners: of the final bilinear resize.
        pretrained: whole-model weights (ours, or an mmseg DMNet checkpoint).
    """

    def __init__(self, num_classes, backbone, backbone_indices=(2, 3), channels=512, filter_sizes=(1, 3, 5, 7),
                 fusion=False, dropout_ratio=0.1, enable_auxiliary_loss=True, aux_channels=256,
                 align_corners=False, pretrained=None):
        super().__init__()
        if not isinstance(backbone, nn.Layer) or not hasattr(backbone, 'feat_channels'):
            raise ConfigError('DMNet.backbone: expected a backbone with feat_channels (a type: dict such as '
                              f'ResNetV1c), got {type(backbone).__name__}')
        if len(backbone_indices) != 2:
            raise ConfigError(f'DMNet.backbone_indices: expected [aux_index, decode_index], got {backbone_indices!r}')
        nfeat = len(backbone.feat_channels)
        if any(not -nfeat <= int(i) < nfeat for i in backbone_indices):
            raise ConfigError(f'DMNet.backbone_indices: {list(backbone_indices)} out of range for a backbone '
                              f'with {nfeat} outputs')
        self.num_classes = num_classes
        self.backbone = backbone
        self.backbone_indices = [int(i) for i in backbone_indices]
        self.align_corners = align_corners
        aux_in, dec_in = (backbone.feat_channels[i] for i in self.backbone_indices)
        self.decode_head = DMHead(dec_in, channels, num_classes, filter_sizes, fusion, dropout_ratio)
        self.auxiliary_head = None
        if enable_auxiliary_loss:
            self.auxiliary_head = FCNHead(aux_in, aux_channels, num_classes, num_convs=1, concat_input=False,
                                          dropout_ratio=dropout_ratio)
            _init_conv_modules(self.auxiliary_head)
        self.pretrained = pretrained
        if pretrained:
            has_aux = self.auxiliary_head is not None
            load_pretrained(self, pretrained, converter=lambda sd: _any_dmnet_to_ours(sd, has_aux), strict=True)

    def forward(self, x):
        size = input_hw(x)
        feats = self.backbone(x)
        logits = [self.decode_head(feats[self.backbone_indices[1]])]
        if self.training and self.auxiliary_head is not None:
            logits.append(self.auxiliary_head(feats[self.backbone_indices[0]]))
        if self.align_corners:
            return [resize_align_corners(logit, size) for logit in logits]
        return upsample_outputs(logits, size, self.align_corners)


# -- checkpoint import ---------------------------------------------------------------

def mmseg_dmnet_to_ours(sd, has_auxiliary=True):
    """mmseg ``EncoderDecoder`` + ``DMHead`` keys -> ours: the trees match, BN stats are renamed.

    The backbone goes through ResNet's own mmseg rename; a model without the auxiliary head
    drops ``auxiliary_head.*`` (used only for training).
    """
    backbone = {k[len('backbone.'):]: v for k, v in sd.items() if k.startswith('backbone.')}
    out = {f'backbone.{k}': v for k, v in mmseg_resnet_to_ours(backbone).items()}
    rest = {k: v for k, v in sd.items() if not k.startswith('backbone.')}
    if not has_auxiliary:
        rest = {k: v for k, v in rest.items() if not k.startswith('auxiliary_head.')}
    out.update(torch_to_paddle_names(rest))
    return out


@register_importer('DMNet', 'mmseg')
def import_mmseg_dmnet(state_dict, model):
    return mmseg_dmnet_to_ours(state_dict, has_auxiliary=model.auxiliary_head is not None)


def _any_dmnet_to_ours(sd, has_auxiliary=True):
    """``pretrained`` accepts our weights or an mmseg checkpoint (detected by torch BN names);
    a model without the auxiliary head ignores ``auxiliary_head.*``."""
    if any(k.endswith(('.running_mean', '.running_var')) for k in sd):
        return mmseg_dmnet_to_ours(sd, has_auxiliary)
    if not has_auxiliary:
        sd = {k: v for k, v in sd.items() if not k.startswith('auxiliary_head.')}
    return sd
