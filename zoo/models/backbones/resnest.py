"""ResNeSt backbone (Zhang et al., "ResNeSt: Split-Attention Networks", arXiv:2004.08955).

The variant MCIBI's "S-101-D8" rows use (sssegmentation's ``ssseg/modules/models/backbones/
resnest.py``, itself mmseg's ResNeSt): a ResNet-D trunk whose bottleneck 3x3 conv is a
split-attention conv.

* deep stem 3x3 convs ``stem_channels // 2``, ``// 2``, ``stem_channels`` (64-64-128);
* split attention with ``radix`` 2 (Sec. 3.1, Fig. 2: ``radix`` feature groups, a global
  context from their sum, an r-softmax over the groups per channel);
* a strided block keeps its split-attention conv at stride 1 and average-pools after it
  (3x3, padding 1, padding counted: torch's ``count_include_pad=True`` == ``exclusive=False``);
* the shortcut of a downsampling block average-pools then applies a 1x1 conv (ResNet-D);
* output stride 8 with contract dilation (first block of a dilated stage at half the rate).

The trunk (deep stem, stages, ResNet-D shortcuts, dilation) is :class:`ResNet`'s; this file
holds only the block (timm's ``resnest.py`` pattern). Parameter names are sssegmentation's
(``stem.<i>``, ``layer<n>.<j>.conv2.{conv,bn0,fc1,bn1,fc2}``, ``downsample.1/2``), so its
checkpoints and the OpenMMLab ImageNet weights it loads (``resnest101_d2-f3b931b2.pth``)
import through ResNet's importer by renaming BN statistics only.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from zoo.models.backbones.resnet import ResNet
from zoo.models.layers import BN_MOMENTUM, batch_norm
from zoo.models.weights import Weights, register_weights
from zoo.utils.download import name_hash_prefix
from zoo.utils.errors import ConfigError
from zoo.utils.registry import BACKBONES


class SplitAttentionConv2D(nn.Layer):
    """``radix`` grouped kxk convs, fused by channel-wise attention over the radix groups."""

    def __init__(self, in_channels, channels, kernel_size=3, stride=1, padding=1, dilation=1, groups=1,
                 radix=2, reduction_factor=4, bn_momentum=BN_MOMENTUM):
        super().__init__()
        inter_channels = max(in_channels * radix // reduction_factor, 32)
        self.radix = radix
        self.groups = groups
        self.channels = channels
        self.conv = nn.Conv2D(in_channels, channels * radix, kernel_size, stride=stride, padding=padding,
                              dilation=dilation, groups=groups * radix, bias_attr=False)
        self.bn0 = batch_norm(channels * radix, bn_momentum)
        self.relu = nn.ReLU()
        self.fc1 = nn.Conv2D(channels, inter_channels, 1, groups=groups)
        self.bn1 = batch_norm(inter_channels, bn_momentum)
        self.fc2 = nn.Conv2D(inter_channels, channels * radix, 1, groups=groups)

    def r_softmax(self, x):
        """[B, radix * C, 1, 1] -> [B, radix, C]: softmax over the radix groups of each
        cardinal group (the reference views the channels as (groups, radix, C / groups))."""
        if self.radix == 1:
            return F.sigmoid(x).reshape([-1, 1, self.channels])
        x = x.reshape([-1, self.groups, self.radix, self.channels // self.groups]).transpose([0, 2, 1, 3])
        return F.softmax(x, axis=1).reshape([-1, self.radix, self.channels])

    def forward(self, x):
        x = self.relu(self.bn0(self.conv(x)))
        splits = paddle.split(x, self.radix, axis=1) if self.radix > 1 else [x]
        gap = splits[0]
        for s in splits[1:]:
            gap = gap + s
        gap = F.adaptive_avg_pool2d(gap, 1)
        gap = self.relu(self.bn1(self.fc1(gap)))
        atten = self.r_softmax(self.fc2(gap))
        out = None
        for i, s in enumerate(splits):
            term = atten[:, i].unsqueeze([2, 3]) * s
            out = term if out is None else out + term
        return out


class ResNeStBottleneck(nn.Layer):
    """1x1 -> split-attention 3x3 (-> 3x3 avg-pool when strided) -> 1x1 (x4 channels)."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None, bn_momentum=BN_MOMENTUM, groups=1,
                 base_width=4, base_channels=64, radix=2, reduction_factor=4, avg_after_conv2=True):
        super().__init__()
        width = planes if groups == 1 else (planes * base_width // base_channels) * groups
        self.use_avg_after_conv2 = avg_after_conv2 and stride > 1
        self.conv1 = nn.Conv2D(inplanes, width, 1, bias_attr=False)
        self.bn1 = batch_norm(width, bn_momentum)
        self.conv2 = SplitAttentionConv2D(width, width, 3, stride=1 if self.use_avg_after_conv2 else stride,
                                          padding=dilation, dilation=dilation, groups=groups, radix=radix,
                                          reduction_factor=reduction_factor, bn_momentum=bn_momentum)
        if self.use_avg_after_conv2:
            self.avg_layer = nn.AvgPool2D(3, stride, padding=1, exclusive=False)
        self.conv3 = nn.Conv2D(width, planes * self.expansion, 1, bias_attr=False)
        self.bn3 = batch_norm(planes * self.expansion, bn_momentum)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.conv2(out)
        if self.use_avg_after_conv2:
            out = self.avg_layer(out)
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


@BACKBONES.register()
def ResNeSt(depth=101, in_channels=3, stem_channels=128, base_channels=64, radix=2, reduction_factor=4, groups=1,
            base_width=4, avg_after_conv2=True, avg_down=True, output_stride=8, contract_dilation=True,
            out_indices=(0, 1, 2, 3), bn_momentum=BN_MOMENTUM, pretrained=None):
    """ResNeSt: a :class:`ResNet` of :class:`ResNeStBottleneck` blocks returning its four stage
    outputs (256, 512, 1024, 2048 channels).

    Args:
        depth: 50, 101, 152 or 200.
        in_channels: image channels.
        stem_channels: deep-stem output width (its first two convs are half of it).
        base_channels: width of the first stage's bottleneck.
        radix, reduction_factor, groups, base_width: split-attention settings (Sec. 3).
        avg_after_conv2: strided blocks average-pool after the split-attention conv.
        avg_down: average-pool shortcut downsampling (ResNet-D).
        output_stride: 8, 16 or 32 (DeepLab-style dilation of the last stages).
        contract_dilation: the first block of a dilated stage uses half the rate.
        out_indices: which stages to return.
        bn_momentum: Paddle BN momentum (0.9 == torch 0.1).
        pretrained: ImageNet weights (a weights-table name, URL or path; OpenMMLab /
            sssegmentation names or ours).
    """
    if depth not in (50, 101, 152, 200):
        raise ConfigError(f'model.backbone.depth: ResNeSt depth must be one of [50, 101, 152, 200], got {depth!r}')
    block_args = dict(groups=groups, base_width=base_width, base_channels=base_channels, radix=radix,
                      reduction_factor=reduction_factor, avg_after_conv2=avg_after_conv2)
    return ResNet(depth=depth, in_channels=in_channels, stem_channels=stem_channels, base_channels=base_channels,
                  deep_stem=True, avg_down=avg_down, output_stride=output_stride,
                  contract_dilation=contract_dilation, out_indices=out_indices, bn_momentum=bn_momentum,
                  pretrained=pretrained, block=ResNeStBottleneck, block_args=block_args)


# the ImageNet weights sssegmentation's ResNeSt loads (its DEFAULT_MODEL_URLS); they load into ResNet
_OPENMMLAB = 'https://download.openmmlab.com/pretrain/third_party/'
register_weights(*[
    Weights(f'resnest{depth}_d2', 'ResNet', 'mmseg', _OPENMMLAB + f, name_hash_prefix(f),
            recipe=f"ImageNet-1k (ResNeSt release, OpenMMLab names); sssegmentation's resnest{depth}")
    for depth, f in ((50, 'resnest50_d2-7497a55b.pth'), (101, 'resnest101_d2-f3b931b2.pth'),
                     (200, 'resnest200_d2-ca88e41f.pth'))])
