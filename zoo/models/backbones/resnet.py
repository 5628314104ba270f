"""ResNet backbones for segmentation: the ``vd`` family (PaddleSeg) and ``V1c`` (mmsegmentation).

One configurable :class:`ResNet` covers both (He et al., "Bag of Tricks for Image
Classification with CNNs", arXiv:1812.01187, Fig. 2):

* ``deep_stem``: three 3x3 convs (32-32-64) instead of one 7x7 conv (ResNet-C / V1c).
* ``avg_down``: the shortcut of a downsampling block average-pools then applies a stride-1
  1x1 conv instead of a strided 1x1 conv (ResNet-D / vd).
* ``strides`` / ``dilations`` per stage, or ``output_stride`` 8/16 as a shortcut (DeepLab:
  the last stages trade stride for dilation).
* ``contract_dilation``: the first block of a dilated stage uses half the dilation
  (mmseg's ``ResLayer``; PaddleSeg's ResNet_vd does not).
* ``multi_grid``: unit rates of the last stage's blocks, **multiplied** by the stage dilation
  (DeepLabV3 paper Sec. 3.2 and PaddleSeg; mmseg instead takes absolute rates).

The module tree is mmseg's (``stem.<i>`` or ``conv1``/``bn1``, ``layer<1-4>.<j>.conv1``/``bn1``
/..., ``downsample.<i>``), so mmseg checkpoints load by renaming BN statistics only and
PaddleSeg's ``ResNet_vd`` (``conv1_1._conv``, ``bb_<s>_<j>.conv0._batch_norm``, ...) by
:func:`paddleseg_resnet_vd_to_ours`. ``forward`` returns the four stage outputs.

Named variants follow timm: ``ResNet50_vd`` etc. (PaddleSeg's ResNet_vd, default
output stride 8), ``ResNetV1c`` / ``ResNetV1d`` (mmseg, ``depth`` argument). Other residual
blocks plug into the same trunk (``block=``, timm's pattern): ResNeSt is
``ResNet(block=ResNeStBottleneck, ...)`` (``backbones/resnest.py``).
"""
import re

import paddle.nn as nn

from zoo.models.convert import load_weights, register_importer, torch_key
from zoo.models.layers import BN_MOMENTUM, batch_norm
from zoo.models.weights import Weights, register_weights
from zoo.utils.download import name_hash_prefix
from zoo.utils.errors import ConfigError
from zoo.utils.registry import BACKBONES

ARCH_SETTINGS = {
    18: ('basic', (2, 2, 2, 2)),
    34: ('basic', (3, 4, 6, 3)),
    50: ('bottleneck', (3, 4, 6, 3)),
    101: ('bottleneck', (3, 4, 23, 3)),
    152: ('bottleneck', (3, 8, 36, 3)),
    200: ('bottleneck', (3, 24, 36, 3)),
}

# output stride -> (strides, dilations) of the four stages (DeepLab's atrous backbones)
OUTPUT_STRIDES = {
    8: ((1, 2, 1, 1), (1, 1, 2, 4)),
    16: ((1, 2, 2, 1), (1, 1, 1, 2)),
    32: ((1, 2, 2, 2), (1, 1, 1, 1)),
}


def _conv3x3(cin, cout, stride=1, dilation=1):
    return nn.Conv2D(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias_attr=False)


class BasicBlock(nn.Layer):
    """Two 3x3 convs (ResNet-18/34). In a dilated stage PaddleSeg's ResNet_vd dilates both,
    mmseg's ResNet only the first (``dilate_conv2=False``, what ``ResNetV1c`` / ``ResNetV1d`` build)."""
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None, bn_momentum=BN_MOMENTUM,
                 dilate_conv2=True):
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = batch_norm(planes, bn_momentum)
        self.conv2 = _conv3x3(planes, planes, 1, dilation if dilate_conv2 else 1)
        self.bn2 = batch_norm(planes, bn_momentum)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Layer):
    """1x1 -> 3x3 (carries stride and dilation, "pytorch" style) -> 1x1 (x4 channels)."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None, bn_momentum=BN_MOMENTUM):
        super().__init__()
        width = planes * self.expansion
        self.conv1 = nn.Conv2D(inplanes, planes, 1, bias_attr=False)
        self.bn1 = batch_norm(planes, bn_momentum)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = batch_norm(planes, bn_momentum)
        self.conv3 = nn.Conv2D(planes, width, 1, bias_attr=False)
        self.bn3 = batch_norm(width, bn_momentum)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _downsample(inplanes, outplanes, stride, avg_down, bn_momentum):
    """Shortcut projection. With ``avg_down`` index 0 is the pool (an Identity when the
    stage is dilated instead of strided), so parameter names stay ``downsample.1/2`` as in
    mmseg (whose pool there is a kernel-1 AvgPool2d)."""
    if avg_down:
        # count_include_pad=False in mmseg == Paddle's exclusive=True (the default)
        pool = nn.AvgPool2D(stride, stride, ceil_mode=True, exclusive=True) if stride > 1 else nn.Identity()
        return nn.Sequential(pool, nn.Conv2D(inplanes, outplanes, 1, bias_attr=False),
                             batch_norm(outplanes, bn_momentum))
    return nn.Sequential(nn.Conv2D(inplanes, outplanes, 1, stride=stride, bias_attr=False),
                         batch_norm(outplanes, bn_momentum))


def block_dilations(num_blocks, dilation, contract_dilation=False, multi_grid=None):
    """Dilation of every block of one stage."""
    if multi_grid is not None:
        if len(multi_grid) != num_blocks:
            raise ConfigError(f'model.backbone.multi_grid: {list(multi_grid)} needs one rate per block '
                              f'of the last stage ({num_blocks})')
        return [dilation * int(g) for g in multi_grid]
    first = dilation // 2 if (contract_dilation and dilation > 1) else dilation
    return [first] + [dilation] * (num_blocks - 1)


@BACKBONES.register()
class ResNet(nn.Layer):
    """ResNet returning the outputs of its four stages (strides 4, 8, 16, 32 before dilation).

    Args:
        depth: 18, 34, 50, 101, 152 or 200.
        in_channels: image channels.
        stem_channels: stem output width (the deep stem is half, half, full).
        base_channels: width of the first stage's bottleneck.
        deep_stem: three 3x3 convs instead of the 7x7 conv (V1c / vd).
        avg_down: average-pool shortcut downsampling (vd / V1d).
        strides, dilations: of each stage (first block carries the stride).
        output_stride: 8, 16 or 32; overrides ``strides``/``dilations`` when given.
        contract_dilation: halve the first block's dilation in dilated stages (mmseg).
        multi_grid: unit rates of the last stage's blocks, multiplied by its dilation.
        out_indices: which stages to return.
        bn_momentum: Paddle BN momentum (0.9 == torch 0.1).
        pretrained: ImageNet weights (a weights-table name, URL or path) in our, PaddleSeg's
            ResNet_vd or OpenMMLab/torchvision names (the format is detected from the keys).
        block, block_args: the residual block class (default: BasicBlock below depth 50,
            Bottleneck otherwise) and its extra keyword arguments (ResNeSt's split attention).
    """

    def __init__(self, depth=50, in_channels=3, stem_channels=64, base_channels=64, deep_stem=False,
                 avg_down=False, strides=(1, 2, 2, 2), dilations=(1, 1, 1, 1), output_stride=None,
                 contract_dilation=False, multi_grid=None, out_indices=(0, 1, 2, 3),
                 bn_momentum=BN_MOMENTUM, pretrained=None, block=None, block_args=None):
        super().__init__()
        if depth not in ARCH_SETTINGS:
            raise ConfigError(f'model.backbone.depth: expected one of {sorted(ARCH_SETTINGS)}, got {depth!r}')
        if output_stride is not None:
            if output_stride not in OUTPUT_STRIDES:
                raise ConfigError(f'model.backbone.output_stride: expected 8, 16 or 32, got {output_stride!r}')
            strides, dilations = OUTPUT_STRIDES[output_stride]
        if len(strides) != 4 or len(dilations) != 4:
            raise ConfigError(f'model.backbone.strides/dilations: need 4 values each, got {strides}, {dilations}')
        kind, stage_blocks = ARCH_SETTINGS[depth]
        if block is None:
            block = BasicBlock if kind == 'basic' else Bottleneck
        block_args = dict(block_args or {})
        self.depth = depth
        self.deep_stem = deep_stem
        self.out_indices = tuple(out_indices)

        if deep_stem:
            half = stem_channels // 2
            self.stem = nn.Sequential(
                nn.Conv2D(in_channels, half, 3, stride=2, padding=1, bias_attr=False), batch_norm(half, bn_momentum),
                nn.ReLU(),
                nn.Conv2D(half, half, 3, padding=1, bias_attr=False), batch_norm(half, bn_momentum), nn.ReLU(),
                nn.Conv2D(half, stem_channels, 3, padding=1, bias_attr=False),
                batch_norm(stem_channels, bn_momentum), nn.ReLU())
        else:
            self.conv1 = nn.Conv2D(in_channels, stem_channels, 7, stride=2, padding=3, bias_attr=False)
            self.bn1 = batch_norm(stem_channels, bn_momentum)
            self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2D(3, stride=2, padding=1)

        inplanes = stem_channels
        self.feat_channels = []
        self.res_layers = []
        for i, num_blocks in enumerate(stage_blocks):
            planes = base_channels * 2 ** i
            outplanes = planes * block.expansion
            stride = strides[i]
            downsample = None
            if stride != 1 or inplanes != outplanes:
                downsample = _downsample(inplanes, outplanes, stride, avg_down, bn_momentum)
            rates = block_dilations(num_blocks, dilations[i], contract_dilation,
                                    multi_grid if i == len(stage_blocks) - 1 else None)
            blocks = [block(inplanes, planes, stride, rates[0], downsample, bn_momentum=bn_momentum, **block_args)]
            blocks += [block(outplanes, planes, 1, r, None, bn_momentum=bn_momentum, **block_args) for r in rates[1:]]
            name = f'layer{i + 1}'
            self.add_sublayer(name, nn.Sequential(*blocks))
            self.res_layers.append(name)
            self.feat_channels.append(outplanes)
            inplanes = outplanes
        self.feat_channels = [self.feat_channels[i] for i in self.out_indices]
        if pretrained:
            load_weights(self, pretrained, strict=False)

    def forward_stem(self, x):
        if self.deep_stem:
            x = self.stem(x)
        else:
            x = self.relu(self.bn1(self.conv1(x)))
        return self.maxpool(x)

    def forward(self, x):
        x = self.forward_stem(x)
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return outs


# -- named variants (timm style: a depth and the family flags over one class) ----------

def _vd(depth):
    def variant(output_stride=8, multi_grid=None, contract_dilation=False, in_channels=3,
                out_indices=(0, 1, 2, 3), bn_momentum=BN_MOMENTUM, pretrained=None):
        return ResNet(depth=depth, in_channels=in_channels, deep_stem=True, avg_down=True,
                      output_stride=output_stride, contract_dilation=contract_dilation,
                      multi_grid=multi_grid, out_indices=out_indices, bn_momentum=bn_momentum,
                      pretrained=pretrained)

    variant.__name__ = variant.__qualname__ = f'ResNet{depth}_vd'
    variant.__doc__ = (f"PaddleSeg's ResNet{depth}_vd: deep stem + avg-pool shortcut, output stride 8 by "
                       'default, no contract dilation; ``multi_grid`` e.g. [1, 2, 4].')
    return BACKBONES.register(variant)


ResNet18_vd = _vd(18)
ResNet34_vd = _vd(34)
ResNet50_vd = _vd(50)
ResNet101_vd = _vd(101)
ResNet152_vd = _vd(152)


def _mmseg_block_args(depth):
    """mmseg's BasicBlock dilates its first conv only (ResNet-18/34 in a dilated stage)."""
    return {'dilate_conv2': False} if ARCH_SETTINGS.get(depth, ('',))[0] == 'basic' else {}


@BACKBONES.register()
def ResNetV1c(depth=50, strides=(1, 2, 2, 2), dilations=(1, 1, 1, 1), output_stride=None,
              contract_dilation=False, multi_grid=None, in_channels=3, out_indices=(0, 1, 2, 3),
              bn_momentum=BN_MOMENTUM, pretrained=None):
    """mmseg's ResNetV1c: deep stem, strided 1x1 shortcut. "R-50-D8" is
    ``strides [1, 2, 1, 1], dilations [1, 1, 2, 4], contract_dilation true``."""
    return ResNet(depth=depth, in_channels=in_channels, deep_stem=True, avg_down=False, strides=strides,
                  dilations=dilations, output_stride=output_stride, contract_dilation=contract_dilation,
                  multi_grid=multi_grid, out_indices=out_indices, bn_momentum=bn_momentum,
                  pretrained=pretrained, block_args=_mmseg_block_args(depth))


@BACKBONES.register()
def ResNetV1d(depth=50, strides=(1, 2, 2, 2), dilations=(1, 1, 1, 1), output_stride=None,
              contract_dilation=False, multi_grid=None, in_channels=3, out_indices=(0, 1, 2, 3),
              bn_momentum=BN_MOMENTUM, pretrained=None):
    """mmseg's ResNetV1d: deep stem and avg-pool shortcut (the same network as ``vd``)."""
    return ResNet(depth=depth, in_channels=in_channels, deep_stem=True, avg_down=True, strides=strides,
                  dilations=dilations, output_stride=output_stride, contract_dilation=contract_dilation,
                  multi_grid=multi_grid, out_indices=out_indices, bn_momentum=bn_momentum,
                  pretrained=pretrained, block_args=_mmseg_block_args(depth))


# -- checkpoint import (ImageNet weights; DeepLabV3 / DMNet / MCIBI reuse the renames) -----

_PDSEG_STEM = {'conv1_1': ('stem.0', 'stem.1'), 'conv1_2': ('stem.3', 'stem.4'),
               'conv1_3': ('stem.6', 'stem.7')}
# PaddleSeg block layer -> (our conv, our bn); Bottleneck has conv0..conv2, BasicBlock conv0..conv1
_PDSEG_BLOCK = {'conv0': ('conv1', 'bn1'), 'conv1': ('conv2', 'bn2'), 'conv2': ('conv3', 'bn3'),
                'short': ('downsample.1', 'downsample.2')}
_PDSEG_KEY = re.compile(r'^(?:(conv1_[123])|bb_(\d+)_(\d+)\.(conv0|conv1|conv2|short))'
                        r'\.(_conv\.weight|_batch_norm\.(?:weight|bias|_mean|_variance))$')


def paddleseg_resnet_vd_key(key):
    """One PaddleSeg ResNet_vd key (``bb_2_0.short._batch_norm._mean``) in our names, or None."""
    m = _PDSEG_KEY.match(key)
    if m is None:
        return None
    stem, stage, idx, part, leaf = m.groups()
    conv, bn = _PDSEG_STEM[stem] if stem else _PDSEG_BLOCK[part]
    prefix = '' if stem else f'layer{int(stage) + 1}.{int(idx)}.'
    if leaf == '_conv.weight':
        return f'{prefix}{conv}.weight'
    return f'{prefix}{bn}.{leaf.split(".", 1)[1]}'


def _is_paddleseg_resnet_vd(state_dict):
    return any(k.startswith(('conv1_1.', 'bb_')) for k in state_dict)


@register_importer('ResNet', 'paddleseg', detect=_is_paddleseg_resnet_vd)
def paddleseg_imagenet_key(key, model):
    """PaddleSeg's ImageNet ResNet_vd (``conv1_1._conv.weight``, ``bb_0_0.conv0...``); a key
    of another layer stays as it is and is reported."""
    return paddleseg_resnet_vd_key(key) or key


# the original ResNeSt release keeps its deep stem in ``conv1`` (a Sequential) and ``bn1``
_RELEASE_STEM = (('conv1.0.', 'stem.0.'), ('conv1.1.', 'stem.1.'), ('conv1.3.', 'stem.3.'),
                 ('conv1.4.', 'stem.4.'), ('conv1.6.', 'stem.6.'), ('bn1.', 'stem.7.'))


@register_importer('ResNet', 'mmseg')
def torch_imagenet_key(key, model):
    """OpenMMLab / torchvision ImageNet weights (``resnet50_v1c``, ``resnest101_d2``): our
    names with PyTorch BN statistics; the ImageNet classifier ``fc`` is dropped."""
    if key.startswith('fc.'):
        return None
    if model.deep_stem:
        for a, b in _RELEASE_STEM:
            if key.startswith(a):
                key = b + key[len(a):]
                break
    return torch_key(key)


def _imagenet(name, source, url, recipe):
    return Weights(name, 'ResNet', source, url, name_hash_prefix(url), recipe=recipe)


register_weights(
    _imagenet('resnet50_vd_ssld_v2', 'paddleseg', 'https://bj.bcebos.com/paddleseg/dygraph/resnet50_vd_ssld_v2.tar.gz',
              "PaddleClas ImageNet-1k, SSLD distillation; PaddleSeg's ResNet50_vd init"),
    _imagenet('resnet101_vd_ssld', 'paddleseg', 'https://bj.bcebos.com/paddleseg/dygraph/resnet101_vd_ssld.tar.gz',
              "PaddleClas ImageNet-1k, SSLD distillation; PaddleSeg's ResNet101_vd init"),
    _imagenet('resnet50_v1c', 'mmseg', 'https://download.openmmlab.com/pretrain/third_party/resnet50_v1c-2cccc1ad.pth',
              "ImageNet-1k; mmseg's open-mmlab://resnet50_v1c, sssegmentation's resnet50conv3x3stem"),
    _imagenet('resnet101_v1c', 'mmseg',
              'https://download.openmmlab.com/pretrain/third_party/resnet101_v1c-e67eebb6.pth',
              "ImageNet-1k; mmseg's open-mmlab://resnet101_v1c, sssegmentation's resnet101conv3x3stem"),
)
