"""RegSeg: real-time segmentation with dilated D blocks (Gao, "Rethinking Dilated Convolution
for Real-time Semantic Segmentation", 2021; reference code: RolandGao/RegSeg).

Layout (paper Fig. 2-4, reference ``model.py`` / ``blocks.py``):

* ``stem``: 3x3 stride-2 conv, 32 channels (1/2).
* ``body``: D blocks in three stages, ``stage4`` (1/4), ``stage8`` (1/8) and ``stage16`` (1/16);
  the 1/16 stage keeps its resolution and grows its receptive field through the dilation
  schedule instead of going to 1/32.
* ``decoder``: 1x1 heads at 1/16, 1/8 and 1/4, 1/16 upsampled and added to 1/8, a 3x3 conv,
  upsampled and concatenated with 1/4, a 3x3 conv, the classifier; the logits are then upsampled
  to the input size (bilinear, ``align_corners=False`` as the reference).

A D block is 1x1 conv -> grouped 3x3 conv (one dilation, or several dilations applied to equal
channel splits, ``DilatedConv``) -> SE -> 1x1 conv, plus a shortcut (2x2 average pool, 1x1 conv
and BN when the block is strided, as ``avg_downsample=True`` in the reference).

Parameter names follow the reference module tree (``stem.conv``, ``body.stage16.3.conv2.convs.1``,
``decoder.head16.bn``...), so importing an official checkpoint only renames BN statistics.
"""
import paddle
import paddle.nn as nn

from zoo.models.convert import register_importer, torch_key
from zoo.models.layers import ConvModule, batch_norm, resize, torch_default_init
from zoo.models.segmentor import Segmentor
from zoo.models.weights import Weights, register_weights
from zoo.utils.errors import ConfigError
from zoo.utils.registry import MODELS

# The body's dilation schedule of the 1/16 stage after its strided first block (reference
# ``exp48``/``exp53``): one block with d=1, one with (1, 2), four with (1, 4), seven with (1, 14).
DILATIONS_EXP48 = [[1], [1, 2]] + 4 * [[1, 4]] + 7 * [[1, 14]]


def _body_exp48(ds=DILATIONS_EXP48):
    """The paper's RegSeg body (reference ``RegSegBody``): group width 16, 48/128/320 channels."""
    return dict(
        group_width=16,
        stage4=[(32, 48, [1], 2)],
        stage8=[(48, 128, [1], 2)] + 2 * [(128, 128, [1], 1)],
        stage16=[(128, 256, [1], 2)] + [(256, 256, d, 1) for d in ds[:-1]] + [(256, 320, ds[-1], 1)],
    )


def _body_exp53(ds=DILATIONS_EXP48):
    """The larger body (reference ``RegSegBody2``): group width 24, 48/120/384 channels."""
    return dict(
        group_width=24,
        stage4=[(32, 48, [1], 2), (48, 48, [1], 1)],
        stage8=[(48, 120, [1], 2)] + 5 * [(120, 120, [1], 1)],
        stage16=[(120, 336, [1], 2)] + [(336, 336, d, 1) for d in ds[:-1]] + [(336, 384, ds[-1], 1)],
    )


# name -> (body spec, decoder widths (head16/head8, head4, fusion convs))
ARCHS = {
    'exp48_decoder26': (_body_exp48, (128, 8, 64)),
    'exp53_decoder29': (_body_exp53, (256, 16, 128)),
}


class SEModule(nn.Layer):
    """Squeeze-and-excitation: global average pool, 1x1 conv, ReLU, 1x1 conv, sigmoid, rescale."""

    def __init__(self, channels, se_channels):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv1 = nn.Conv2D(channels, se_channels, 1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2D(se_channels, channels, 1)
        self.act2 = nn.Sigmoid()

    def forward(self, x):
        y = self.act2(self.conv2(self.act1(self.conv1(self.avg_pool(x)))))
        return x * y


class Shortcut(nn.Layer):
    """Identity replacement when a block changes width or resolution.

    Strided: 2x2 average pool (ceil mode; a partial window averages its valid pixels, as
    torch's ``AvgPool2d(2, 2, ceil_mode=True)``) then 1x1 conv and BN.
    """

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.avg = nn.AvgPool2D(2, 2, ceil_mode=True, exclusive=True) if stride != 1 else None
        self.conv = nn.Conv2D(in_channels, out_channels, 1, bias_attr=False)
        self.bn = batch_norm(out_channels)

    def forward(self, x):
        if self.avg is not None:
            x = self.avg(x)
        return self.bn(self.conv(x))


class DilatedConv(nn.Layer):
    """Grouped 3x3 convs with different dilations over equal channel splits, concatenated.

    With dilations (1, d) half the channels see a 3x3 neighbourhood and half a (2d+1)^2 one
    (paper Sec. 3.1). Each split keeps the block's group width.
    """

    def __init__(self, channels, dilations, group_width, stride=1):
        super().__init__()
        n = len(dilations)
        if channels % n or (channels // n) % group_width:
            raise ConfigError(f'model.name: a D block of {channels} channels cannot be split {n} ways in '
                              f'groups of {group_width}')
        split = channels // n
        self.num_splits = n
        self.convs = nn.LayerList([
            nn.Conv2D(split, split, 3, stride=stride, padding=d, dilation=d, groups=split // group_width,
                      bias_attr=False) for d in dilations])

    def forward(self, x):
        xs = paddle.split(x, self.num_splits, axis=1)
        return paddle.concat([conv(xi) for conv, xi in zip(self.convs, xs)], axis=1)


class DBlock(nn.Layer):
    """The D block (paper Fig. 3/4): 1x1 -> grouped dilated 3x3 -> SE -> 1x1, residual, ReLU.

    The SE width is a quarter of the block's *input* width, as in the reference.
    """

    def __init__(self, in_channels, out_channels, dilations, group_width, stride=1):
        super().__init__()
        groups = out_channels // group_width
        self.conv1 = nn.Conv2D(in_channels, out_channels, 1, bias_attr=False)
        self.bn1 = batch_norm(out_channels)
        self.act1 = nn.ReLU()
        if len(dilations) == 1:
            d = dilations[0]
            self.conv2 = nn.Conv2D(out_channels, out_channels, 3, stride=stride, padding=d, dilation=d,
                                   groups=groups, bias_attr=False)
        else:
            self.conv2 = DilatedConv(out_channels, dilations, group_width, stride)
        self.bn2 = batch_norm(out_channels)
        self.act2 = nn.ReLU()
        self.se = SEModule(out_channels, in_channels // 4)
        self.conv3 = nn.Conv2D(out_channels, out_channels, 1, bias_attr=False)
        self.bn3 = batch_norm(out_channels)
        self.act3 = nn.ReLU()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = Shortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = None

    def forward(self, x):
        shortcut = self.shortcut(x) if self.shortcut is not None else x
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = self.se(x)
        x = self.bn3(self.conv3(x))
        return self.act3(x + shortcut)


def _stage(specs, group_width):
    blocks = [DBlock(cin, cout, list(d), group_width, s) for cin, cout, d, s in specs]
    # a one-block stage is the block itself in the reference (``body.stage4.conv1``)
    return blocks[0] if len(blocks) == 1 else nn.Sequential(*blocks)


class RegSegBody(nn.Layer):
    """Three stages of D blocks; returns the 1/4, 1/8 and 1/16 features."""

    def __init__(self, group_width, stage4, stage8, stage16):
        super().__init__()
        self.stage4 = _stage(stage4, group_width)
        self.stage8 = _stage(stage8, group_width)
        self.stage16 = _stage(stage16, group_width)
        self.channels = (stage4[-1][1], stage8[-1][1], stage16[-1][1])

    def forward(self, x):
        x4 = self.stage4(x)
        x8 = self.stage8(x4)
        x16 = self.stage16(x8)
        return x4, x8, x16


class RegSegDecoder(nn.Layer):
    """Reference ``Exp2_Decoder26`` (widths 128/8/64) and ``Exp2_Decoder29`` (256/16/128)."""

    def __init__(self, num_classes, in_channels, head_channels=128, head4_channels=8, fuse_channels=64,
                 align_corners=False):
        super().__init__()
        c4, c8, c16 = in_channels
        self.align_corners = align_corners
        self.head16 = ConvModule(c16, head_channels, 1)
        self.head8 = ConvModule(c8, head_channels, 1)
        self.head4 = ConvModule(c4, head4_channels, 1)
        self.conv8 = ConvModule(head_channels, fuse_channels, 3, padding=1)
        self.conv4 = ConvModule(fuse_channels + head4_channels, fuse_channels, 3, padding=1)
        self.classifier = nn.Conv2D(fuse_channels, num_classes, 1)

    def _up(self, x, like):
        return resize(x, paddle.shape(like)[2:], align_corners=self.align_corners)

    def forward(self, feats):
        x4, x8, x16 = feats
        x16 = self.head16(x16)
        x8 = self.head8(x8)
        x4 = self.head4(x4)
        x8 = self.conv8(x8 + self._up(x16, x8))
        x4 = self.conv4(paddle.concat([self._up(x8, x4), x4], axis=1))
        return self.classifier(x4)


@MODELS.register()
class RegSeg(Segmentor):
    """RegSeg (``exp48_decoder26``, the paper's model) and its larger ``exp53_decoder29``.

    Its trunk is the reference's ``stem`` and ``body`` (the backbone), its head ``decoder``.

    Args:
        num_classes: output classes.
        name: ``exp48_decoder26`` or ``exp53_decoder29``.
        align_corners: of every bilinear resize (the reference uses False).
        pretrained: weights in our names (Paddle), a weights-table name, or an official ``.pth``
            (``{'model': state_dict}``); a classifier of another class count is skipped and
            stays freshly initialised (the reference's ``change_num_classes``, used to start
            CamVid from Cityscapes).
    """

    keep_mismatched = ('decoder.classifier.',)

    def __init__(self, num_classes, name='exp48_decoder26', align_corners=False, pretrained=None):
        super().__init__(num_classes, align_corners)
        if name not in ARCHS:
            raise ConfigError(f'model.name: unknown RegSeg variant {name!r} (expected one of {", ".join(ARCHS)})')
        body_fn, (head, head4, fuse) = ARCHS[name]
        self.name = name
        self.stem = ConvModule(3, 32, 3, stride=2, padding=1)
        self.body = RegSegBody(**body_fn())
        self.decoder = RegSegDecoder(num_classes, self.body.channels, head, head4, fuse, align_corners)
        torch_default_init(self)
        self.init_pretrained(pretrained)

    def extract_feat(self, x):
        """The 1/4, 1/8 and 1/16 body features."""
        return self.body(self.stem(x))

    def decode(self, feats):
        return [self.decoder(feats)]


# official RegSeg checkpoints use our names already; only BN statistics are renamed
register_importer('RegSeg', 'regseg')(torch_key)


_RELEASE = 'https://github.com/RolandGao/RegSeg/releases/download/v1.0-alpha/'
_TRAIN = 'official recipe: SGD lr 0.05, poly, 768x768 crops, 1000 epochs on Cityscapes train'
_TRAINVAL = ('official recipe: SGD lr 0.05, poly, 1024x1024 crops, bootstrapped CE, 1000 epochs on '
             'Cityscapes train+val')
register_weights(
    *[Weights(f'regseg_exp48_cityscapes_train_run{i}', 'RegSeg', 'regseg',
              f'{_RELEASE}cityscapes_exp48_decoder26_train_1000_epochs_run{i}',
              config='configs/regseg/regseg_exp48_cityscapes_768x768_1000e.yml', metric='Cityscapes val mIoU',
              miou=miou, recipe=_TRAIN)
      for i, miou in ((1, 77.76), (2, 78.85), (3, 78.07))],
    Weights('regseg_exp48_cityscapes_trainval', 'RegSeg', 'regseg',
            f'{_RELEASE}cityscapes_exp48_decoder26_trainval_1000_epochs_1024_crop_bootstrapped_run1',
            metric='Cityscapes test mIoU', miou=78.3, recipe=_TRAINVAL),
    Weights('regseg_exp53_cityscapes_trainval', 'RegSeg', 'regseg',
            f'{_RELEASE}cityscapes_exp53_decoder29_trainval_1000_epochs_1024_crop_bootstrapped_run1',
            metric='Cityscapes test mIoU (name: exp53_decoder29)', miou=79.5, recipe=_TRAINVAL),
)
