"""HRNetV2 backbone (Wang et al., "Deep High-Resolution Representation Learning for Visual
Recognition", TPAMI 2020, arXiv:1908.07919).

As sssegmentation builds it (``ssseg/modules/models/backbones/hrnet.py``, mmseg's layout):

* stem: two 3x3 stride-2 convs (64 channels) -> stage 1: four Bottlenecks (256 channels);
* stages 2-4 add a branch at half the resolution each (W48: 48/96/192/384 channels) through
  ``transition<k>`` layers; a stage is ``num_modules`` HR modules, each four BasicBlocks per
  branch followed by ``fuse_layers`` (Sec. 3: 1x1 conv + BN + bilinear upsampling from lower
  resolutions, chains of stride-2 3x3 convs from higher ones, summed, ReLU);
* output (HRNetV2, Sec. 3 "representation head"): every branch upsampled to 1/4 and
  concatenated (720 channels for W48), returned as a one-element list.

``mcibi_version`` skips the ReLU after the first stem conv: sssegmentation's MCIBI Cityscapes
config sets it (its HRNet ``forward``: ``if not self.mcibi_version: x = self.relu(x)``), and
the published Cityscapes checkpoint was trained that way. ``downsample_stride`` > 1 appends
the 3x3 conv + BN + ReLU that MCIBI's head applies to the HRNet output (the reference's
``downsample_backbone``, stride 2 in the Cityscapes config) under the same name.

Parameter names are the reference's (``conv1``, ``layer1.<j>``, ``transition<k>.<i>.<j>``,
``stage<n>.<m>.branches.<b>.<j>``, ``stage<n>.<m>.fuse_layers.<i>.<j>...``); the reference's
``None`` placeholders are parameter-free ``Identity`` layers here, so indices line up.
"""
import paddle
import paddle.nn as nn

from zoo.models.backbones.resnet import BasicBlock, Bottleneck
from zoo.models.convert import load_weights, register_importer, torch_key
from zoo.models.layers import BN_MOMENTUM, batch_norm, conv_bn_act, resize
from zoo.models.weights import Weights, register_weights
from zoo.utils.download import name_hash_prefix
from zoo.utils.errors import ConfigError
from zoo.utils.registry import BACKBONES


def _arch(stage1_blocks, blocks, modules, width):
    """(num_modules, block, num_blocks per branch, channels per branch) of stages 1-4."""
    return [
        (1, 'BOTTLENECK', (stage1_blocks,), (64,)),
        (modules[0], 'BASIC', (blocks,) * 2, (width, width * 2)),
        (modules[1], 'BASIC', (blocks,) * 3, (width, width * 2, width * 4)),
        (modules[2], 'BASIC', (blocks,) * 4, (width, width * 2, width * 4, width * 8)),
    ]


ARCH_SETTINGS = {
    'hrnetv2_w18_small': _arch(2, 2, (1, 3, 2), 18),
    'hrnetv2_w18': _arch(4, 4, (1, 4, 3), 18),
    'hrnetv2_w32': _arch(4, 4, (1, 4, 3), 32),
    'hrnetv2_w40': _arch(4, 4, (1, 4, 3), 40),
    'hrnetv2_w48': _arch(4, 4, (1, 4, 3), 48),
}
BLOCKS = {'BASIC': BasicBlock, 'BOTTLENECK': Bottleneck}


def _conv_bn(cin, cout, kernel_size, stride, bn_momentum, act=False):
    return conv_bn_act(cin, cout, kernel_size, stride, act='relu' if act else None, bn_momentum=bn_momentum)


def _make_layer(block, inplanes, planes, num_blocks, bn_momentum):
    downsample = None
    if inplanes != planes * block.expansion:
        downsample = _conv_bn(inplanes, planes * block.expansion, 1, 1, bn_momentum)
    layers = [block(inplanes, planes, 1, 1, downsample, bn_momentum)]
    layers += [block(planes * block.expansion, planes, 1, 1, None, bn_momentum) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


class UpsampleFuse(nn.Sequential):
    """1x1 conv + BN from a lower-resolution branch, then bilinear upsampling by ``scale``."""

    def __init__(self, cin, cout, scale, bn_momentum):
        super().__init__(nn.Conv2D(cin, cout, 1, bias_attr=False), batch_norm(cout, bn_momentum))
        self.scale = scale

    def forward(self, x):
        return resize(super().forward(x), scale_factor=self.scale)


class HRModule(nn.Layer):
    """Parallel branches of blocks, then the multi-resolution fusion (Sec. 3, Fig. 3)."""

    def __init__(self, block, num_blocks, in_channels, num_channels, multiscale_output=True,
                 bn_momentum=BN_MOMENTUM):
        super().__init__()
        n = len(num_channels)
        if not (len(num_blocks) == len(in_channels) == n):
            raise ConfigError(f'model.backbone: HRModule num_blocks {num_blocks}, in_channels {in_channels} and '
                              f'num_channels {num_channels} need one entry per branch')
        self.num_branches = n
        self.branches = nn.LayerList([
            _make_layer(block, in_channels[b], num_channels[b], num_blocks[b], bn_momentum) for b in range(n)])
        ch = [c * block.expansion for c in num_channels]
        self.out_channels = ch
        self.fuse_layers = None
        if n > 1:
            fuse = []
            for i in range(n if multiscale_output else 1):
                row = []
                for j in range(n):
                    if j > i:
                        row.append(UpsampleFuse(ch[j], ch[i], 2 ** (j - i), bn_momentum))
                    elif j == i:
                        row.append(nn.Identity())
                    else:
                        row.append(nn.Sequential(*[
                            _conv_bn(ch[j], ch[i], 3, 2, bn_momentum) if k == i - j - 1
                            else _conv_bn(ch[j], ch[j], 3, 2, bn_momentum, act=True) for k in range(i - j)]))
                fuse.append(nn.LayerList(row))
            self.fuse_layers = nn.LayerList(fuse)
        self.relu = nn.ReLU()

    def forward(self, xs):
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if self.fuse_layers is None:
            return xs
        outs = []
        for i, row in enumerate(self.fuse_layers):
            y = xs[i]
            for j in range(self.num_branches):
                if j > i:   # the reference resizes again to the exact size (odd inputs)
                    y = y + resize(row[j](xs[j]), paddle.shape(xs[i])[2:])
                elif j < i:
                    y = y + row[j](xs[j])
            outs.append(self.relu(y))
        return outs


@BACKBONES.register()
class HRNet(nn.Layer):
    """HRNetV2: returns ``[concat of all branches at 1/4]`` (720 channels for W48).

    Args:
        arch: ``hrnetv2_w18_small``, ``hrnetv2_w18``, ``hrnetv2_w32``, ``hrnetv2_w40`` or ``hrnetv2_w48``.
        in_channels: image channels.
        multiscale_output: the last module fuses into every branch (always true for HRNetV2).
        width, num_blocks, num_modules, stage1_blocks: override the named ``arch`` (branch-1
            width, blocks per branch, modules of stages 2-4, stage-1 Bottlenecks), e.g. for a
            small model in tests; ``None`` keeps the arch's value.
        mcibi_version: skip the ReLU after the first stem conv (sssegmentation's MCIBI Cityscapes).
        downsample_stride: > 1 appends MCIBI's ``downsample_backbone`` (3x3 conv, stride, BN, ReLU).
        bn_momentum: Paddle BN momentum (0.9 == torch 0.1).
        pretrained: ImageNet weights (a weights-table name, URL or path; OpenMMLab / sssegmentation
            names or ours).
    """

    def __init__(self, arch='hrnetv2_w48', in_channels=3, width=None, num_blocks=None, num_modules=None,
                 stage1_blocks=None, multiscale_output=True, mcibi_version=False, downsample_stride=1,
                 bn_momentum=BN_MOMENTUM, pretrained=None):
        super().__init__()
        if arch not in ARCH_SETTINGS:
            raise ConfigError(f'model.backbone.arch: expected one of {sorted(ARCH_SETTINGS)}, got {arch!r}')
        stages = ARCH_SETTINGS[arch]
        if any(v is not None for v in (width, num_blocks, num_modules, stage1_blocks)):
            if num_modules is not None and len(num_modules) != 3:
                raise ConfigError(f'model.backbone.num_modules: needs 3 values (stages 2-4), got {num_modules!r}')
            stages = _arch(stage1_blocks or stages[0][2][0], num_blocks or stages[1][2][0],
                           tuple(num_modules or (s[0] for s in stages[1:])), width or stages[1][3][0])
        self.arch = arch
        self.mcibi_version = mcibi_version
        self.conv1 = nn.Conv2D(in_channels, 64, 3, stride=2, padding=1, bias_attr=False)
        self.bn1 = batch_norm(64, bn_momentum)
        self.conv2 = nn.Conv2D(64, 64, 3, stride=2, padding=1, bias_attr=False)
        self.bn2 = batch_norm(64, bn_momentum)
        self.relu = nn.ReLU()
        _, name, blocks, channels = stages[0]
        block = BLOCKS[name]
        self.layer1 = _make_layer(block, 64, channels[0], blocks[0], bn_momentum)
        pre = [channels[0] * block.expansion]
        # per stage: which branches take their transition from the last previous branch
        self._from_last = []
        for s, (num_modules, name, blocks, channels) in enumerate(stages[1:], start=2):
            block = BLOCKS[name]
            cur = [c * block.expansion for c in channels]
            trans, from_last = [], []
            for i, c in enumerate(cur):
                if i < len(pre):
                    trans.append(_conv_bn(pre[i], c, 3, 1, bn_momentum, act=True) if c != pre[i] else nn.Identity())
                    from_last.append(False)
                else:
                    trans.append(nn.Sequential(*[
                        _conv_bn(pre[-1], c if k == i - len(pre) else pre[-1], 3, 2, bn_momentum, act=True)
                        for k in range(i + 1 - len(pre))]))
                    from_last.append(True)
            self.add_sublayer(f'transition{s - 1}', nn.LayerList(trans))
            self._from_last.append(from_last)
            modules, in_ch = [], list(cur)
            for m in range(num_modules):
                last = s == len(stages) and m == num_modules - 1
                module = HRModule(block, blocks, in_ch, channels, multiscale_output or not last, bn_momentum)
                in_ch = module.out_channels
                modules.append(module)
            self.add_sublayer(f'stage{s}', nn.Sequential(*modules))
            pre = cur
        out_channels = sum(pre)
        self.downsample_backbone = None
        if downsample_stride > 1:
            self.downsample_backbone = _conv_bn(out_channels, out_channels, 3, downsample_stride, bn_momentum, act=True)
        self.feat_channels = [out_channels]
        if pretrained:
            load_weights(self, pretrained, strict=False)

    def forward(self, x):
        x = self.bn1(self.conv1(x))
        if not self.mcibi_version:
            x = self.relu(x)
        x = self.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        for k, from_last in enumerate(self._from_last):
            trans = getattr(self, f'transition{k + 1}')
            xs = [trans[i](ys[-1] if last else ys[i]) for i, last in enumerate(from_last)]
            ys = getattr(self, f'stage{k + 2}')(xs)
        size = paddle.shape(ys[0])[2:]
        out = paddle.concat([ys[0]] + [resize(y, size) for y in ys[1:]], axis=1)
        if self.downsample_backbone is not None:
            out = self.downsample_backbone(out)
        return [out]


_IMAGENET_HEAD = ('incre_modules.', 'downsamp_modules.', 'final_layer.', 'classifier.')


@register_importer('HRNet', 'mmseg')
def torch_imagenet_key(key, model):
    """OpenMMLab's ImageNet HRNetV2 weights (what sssegmentation loads): our names with PyTorch
    BN statistics; their ImageNet classification head is dropped."""
    return None if key.startswith(_IMAGENET_HEAD) else torch_key(key)


# the ImageNet weights sssegmentation's HRNet loads (its DEFAULT_MODEL_URLS)
register_weights(*[
    Weights(arch, 'HRNet', 'mmseg', 'https://download.openmmlab.com/pretrain/third_party/' + f, name_hash_prefix(f),
            recipe=f"ImageNet-1k (HRNet release, OpenMMLab names); sssegmentation's {arch}")
    for arch, f in (('hrnetv2_w18_small', 'hrnetv2_w18_small-b5a04e21.pth'),
                    ('hrnetv2_w18', 'hrnetv2_w18-00eb2006.pth'), ('hrnetv2_w32', 'hrnetv2_w32-dc9eeb4f.pth'),
                    ('hrnetv2_w40', 'hrnetv2_w40-ed0b031c.pth'), ('hrnetv2_w48', 'hrnetv2_w48-d2186c55.pth'))])
