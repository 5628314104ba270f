"""DMNet's decode head (He, Deng, Qiao, "Dynamic Multi-scale Filters for Semantic
Segmentation", ICCV 2019, Sec. 3, Fig. 2): one Dynamic Convolutional Module (DCM) per filter
size k in (1, 3, 5, 7) on the last backbone feature. Each DCM

1. generates a k x k filter **per sample and channel** from the input itself
   (adaptive average pooling to k x k, then a 1x1 conv ``filter_gen_conv``),
2. reduces the input with a 1x1 ConvModule (``input_redu_conv``),
3. convolves the reduced feature of each sample with that sample's filters (a depthwise
   convolution whose weights differ per sample), then BN (``norm``) and ReLU
   (``activate``), optionally followed by a 1x1 ``fusion_conv``.

``DMHead`` concatenates its input with the DCM outputs and applies a 3x3 ``bottleneck``,
dropout and the classifier ``conv_seg``. Names follow mmsegmentation 1.x
(``mmseg/models/decode_heads/dm_head.py``).
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from zoo.models.heads.base import DecodeHead
from zoo.models.layers import BN_MOMENTUM, ConvModule, batch_norm, init_conv_modules, reset_norms
from zoo.utils.errors import ConfigError
from zoo.utils.registry import HEADS


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
        self.norm = batch_norm(channels, bn_momentum)
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
class DMHead(DecodeHead):
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
        super().__init__(in_channels, channels, num_classes, dropout_ratio, True, in_index)
        if not filter_sizes or any(int(k) < 1 for k in filter_sizes):
            raise ConfigError(f'model.filter_sizes: expected a non-empty list of positive ints, got {filter_sizes!r}')
        self.filter_sizes = [int(k) for k in filter_sizes]
        self.dcm_modules = nn.LayerList([DCM(k, fusion, in_channels, channels, bn_momentum)
                                         for k in self.filter_sizes])
        self.bottleneck = ConvModule(in_channels + len(self.filter_sizes) * channels, channels, 3, padding=1,
                                     bn_momentum=bn_momentum)
        self.add_classifier(init=False)
        init_conv_modules(self)  # mmcv's ConvModule init; the DCMs' own BN to the identity too
        reset_norms([dcm.norm for dcm in self.dcm_modules])
        self.init_classifier()

    def forward_feature(self, inputs):
        x = self.select_input(inputs)
        feats = [x] + [dcm(x) for dcm in self.dcm_modules]
        return self.bottleneck(paddle.concat(feats, axis=1))
