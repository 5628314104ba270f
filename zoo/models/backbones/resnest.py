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

Parameter names are sssegmentation's (``stem.<i>``, ``layer<n>.<j>.conv2.{conv,bn0,fc1,bn1,fc2}``,
``downsample.1/2``), so its checkpoints and the OpenMMLab ImageNet weights it loads
(``resnest101_d2-f3b931b2.pth``) import by renaming BN statistics only.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from zoo.utils.checkpoint import load_pretrained
from zoo.utils.errors import ConfigError
from zoo.utils.registry import BACKBONES

from ..convert import torch_to_paddle_names
from ..layers import BN_EPS, BN_MOMENTUM
from .resnet import OUTPUT_STRIDES, _downsample, block_dilations

# the ImageNet weights sssegmentation's ResNeSt loads (DEFAULT_MODEL_URLS there)
PRETRAINED_URLS = {
    50: 'https://download.openmmlab.com/pretrain/third_party/resnest50_d2-7497a55b.pth',
    101: 'https://download.openmmlab.com/pretrain/third_party/resnest101_d2-f3b931b2.pth',
    200: 'https://download.openmmlab.com/pretrain/third_party/resnest200_d2-ca88e41f.pth',
}

STAGE_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3)}


def _bn(channels, momentum):
    return nn.BatchNorm2D(channels, momentum=momentum, epsilon=BN_EPS)


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
        self.bn0 = _bn(channels * radix, bn_momentum)
        self.relu = nn.ReLU()
        self.fc1 = nn.Conv2D(channels, inter_channels, 1, groups=groups)
        self.bn1 = _bn(inter_channels, bn_momentum)
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

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None, groups=1, base_width=4,
                 base_channels=64, radix=2, reduction_factor=4, avg_after_conv2=True, bn_momentum=BN_MOMENTUM):
        super().__init__()
        width = planes if groups == 1 else (planes * base_width // base_channels) * groups
        self.use_avg_after_conv2 = avg_after_conv2 and stride > 1
        self.conv1 = nn.Conv2D(inplanes, width, 1, bias_attr=False)
        self.bn1 = _bn(width, bn_momentum)
        self.conv2 = SplitAttentionConv2D(width, width, 3, stride=1 if self.use_avg_after_conv2 else stride,
                                          padding=dilation, dilation=dilation, groups=groups, radix=radix,
                                          reduction_factor=reduction_factor, bn_momentum=bn_momentum)
        if self.use_avg_after_conv2:
            self.avg_layer = nn.AvgPool2D(3, stride, padding=1, exclusive=False)
        self.conv3 = nn.Conv2D(width, planes * self.expansion, 1, bias_attr=False)
        self.bn3 = _bn(planes * self.expansion, bn_momentum)
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
class ResNeSt(nn.Layer):
    """ResNeSt returning its four stage outputs (256, 512, 1024, 2048 channels).

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
        pretrained: path or URL of ImageNet weights (OpenMMLab / sssegmentation names or ours).
    """

    def __init__(self, depth=101, in_channels=3, stem_channels=128, base_channels=64, radix=2,
                 reduction_factor=4, groups=1, base_width=4, avg_after_conv2=True, avg_down=True,
                 output_stride=8, contract_dilation=True, out_indices=(0, 1, 2, 3),
                 bn_momentum=BN_MOMENTUM, pretrained=None):
        super().__init__()
        if depth not in STAGE_BLOCKS:
            raise ConfigError(f'ResNeSt depth must be one of {sorted(STAGE_BLOCKS)}, got {depth!r}')
        if output_stride not in OUTPUT_STRIDES:
            raise ConfigError(f'ResNeSt output_stride must be 8, 16 or 32, got {output_stride!r}')
        strides, dilations = OUTPUT_STRIDES[output_stride]
        self.out_indices = tuple(out_indices)
        half = stem_channels // 2
        self.stem = nn.Sequential(
            nn.Conv2D(in_channels, half, 3, stride=2, padding=1, bias_attr=False), _bn(half, bn_momentum), nn.ReLU(),
            nn.Conv2D(half, half, 3, padding=1, bias_attr=False), _bn(half, bn_momentum), nn.ReLU(),
            nn.Conv2D(half, stem_channels, 3, padding=1, bias_attr=False), _bn(stem_channels, bn_momentum),
            nn.ReLU())
        self.maxpool = nn.MaxPool2D(3, stride=2, padding=1)
        block_args = dict(groups=groups, base_width=base_width, base_channels=base_channels, radix=radix,
                          reduction_factor=reduction_factor, avg_after_conv2=avg_after_conv2,
                          bn_momentum=bn_momentum)
        expansion = ResNeStBottleneck.expansion
        inplanes = stem_channels
        self.res_layers, channels = [], []
        for i, num_blocks in enumerate(STAGE_BLOCKS[depth]):
            planes = base_channels * 2 ** i
            outplanes = planes * expansion
            downsample = None
            if strides[i] != 1 or inplanes != outplanes:
                downsample = _downsample(inplanes, outplanes, strides[i], avg_down, bn_momentum)
            rates = block_dilations(num_blocks, dilations[i], contract_dilation)
            blocks = [ResNeStBottleneck(inplanes, planes, strides[i], rates[0], downsample, **block_args)]
            blocks += [ResNeStBottleneck(outplanes, planes, 1, r, None, **block_args) for r in rates[1:]]
            self.add_sublayer(f'layer{i + 1}', nn.Sequential(*blocks))
            self.res_layers.append(f'layer{i + 1}')
            channels.append(outplanes)
            inplanes = outplanes
        self.feat_channels = [channels[i] for i in self.out_indices]
        self.pretrained = pretrained
        if pretrained:
            load_pretrained(self, pretrained, converter=imagenet_resnest_to_ours)

    def forward(self, x):
        x = self.maxpool(self.stem(x))
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return outs


def imagenet_resnest_to_ours(sd):
    """OpenMMLab's ``resnest101_d2`` ImageNet weights (what sssegmentation loads) -> ours.

    Their names are ours; BN statistics are renamed and an optional ``backbone.`` /
    ``backbone_net.`` prefix is stripped. The original ResNeSt release's deep stem
    (``conv1.<0,1,3,4,6>``, ``bn1``) is renamed to ``stem.<i>`` as well. The classifier
    ``fc.*`` is reported as unexpected.
    """
    for prefix in ('backbone_net.', 'backbone.'):
        if any(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if any(k.startswith('conv1.0.') for k in sd):
        stem = {'conv1.0.': 'stem.0.', 'conv1.1.': 'stem.1.', 'conv1.3.': 'stem.3.', 'conv1.4.': 'stem.4.',
                'conv1.6.': 'stem.6.', 'bn1.': 'stem.7.'}
        sd = {next((b + k[len(a):] for a, b in stem.items() if k.startswith(a)), k): v for k, v in sd.items()}
    return torch_to_paddle_names(sd)
