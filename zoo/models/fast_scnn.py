"""Fast-SCNN (Poudel et al., 2019, https://arxiv.org/abs/1902.04502), mmsegmentation layout.

Faithful to mmsegmentation 1.x (``mmseg/models/backbones/fast_scnn.py``, unchanged since
v0.17 which the published 70.96 mIoU Cityscapes checkpoint cites), as configured by
``configs/_base_/models/fast_scnn.py``:

* ``learning_to_downsample``: 3x3/2 conv-BN-ReLU (32) and two depthwise-separable 3x3/2
  convs (48, 64) whose depthwise half has BN but no activation (mmseg ``dw_act_cfg=None``).
* ``global_feature_extractor``: three groups of 3 MobileNetV2 inverted residuals (64, 96, 128
  channels, strides 2, 2, 1, expansion 6; ReLU, as mmseg passes ``act_cfg`` down, not the
  ReLU6 default), a PSP pyramid pooling (adaptive average pooling to 1, 2, 3, 6, 1x1 conv to
  32 channels each, bilinear back) concatenated to the input, and a 3x3 conv-BN-ReLU ``out``.
* ``feature_fusion``: low-res branch upsampled to 1/8, 3x3 depthwise conv-BN-ReLU, 1x1
  conv-BN; high-res branch 1x1 conv-BN; sum then ReLU.
* ``decode_head``: DepthwiseSeparableFCNHead (2 convs, 128 channels, no concat) on the fused
  features; ``auxiliary_head.0`` FCNHead on the GFE output (128 -> 32), ``auxiliary_head.1``
  on the learning-to-downsample output (64 -> 32), each 1 conv, loss weight 0.4 in mmseg.

Parameter names are the whole mmseg segmentor's (``backbone.…``, ``decode_head.…``,
``auxiliary_head.<i>.…``), so the mmseg importer only renames BN statistics.
BN: mmseg uses SyncBN momentum 0.01 (torch convention) -> Paddle momentum 0.99.
"""
import paddle
import paddle.nn as nn

from zoo.models.convert import register_importer, torch_key
from zoo.models.heads.fcn_head import DepthwiseSeparableFCNHead, FCNHead
from zoo.models.layers import (BN_MOMENTUM, ConvModule, DepthwiseSeparableConvModule, input_hw, kaiming_init,
                               reset_norms, resize, torch_bn_momentum)
from zoo.models.segmentor import Segmentor
from zoo.models.weights import config_weights, register_weights
from zoo.utils.errors import ConfigError
from zoo.utils.registry import MODELS

# mmseg's fast_scnn.py config: SyncBN(momentum=0.01) in torch's convention.
FAST_SCNN_BN_MOMENTUM = torch_bn_momentum(0.01)


class LearningToDownsample(nn.Layer):
    """Paper Sec. 3.2.1: conv + two depthwise-separable convs, each stride 2 (1/8 overall)."""

    def __init__(self, in_channels, dw_channels, out_channels, bn_momentum):
        super().__init__()
        c1, c2 = dw_channels
        self.conv = ConvModule(in_channels, c1, 3, stride=2, padding=1, bn_momentum=bn_momentum)
        self.dsconv1 = DepthwiseSeparableConvModule(c1, c2, 3, stride=2, padding=1, dw_act=None,
                                                    bn_momentum=bn_momentum)
        self.dsconv2 = DepthwiseSeparableConvModule(c2, out_channels, 3, stride=2, padding=1, dw_act=None,
                                                    bn_momentum=bn_momentum)

    def forward(self, x):
        return self.dsconv2(self.dsconv1(self.conv(x)))


class InvertedResidual(nn.Layer):
    """MobileNetV2 bottleneck: 1x1 expand, 3x3 depthwise (stride), 1x1 project (no act).

    ``conv`` is a Sequential as in mmseg's ``InvertedResidual`` (``conv.0`` expand, ``conv.1``
    depthwise, ``conv.2`` project; the expand conv is absent when ``expand_ratio`` is 1).
    """

    def __init__(self, in_channels, out_channels, stride, expand_ratio, act='relu', bn_momentum=BN_MOMENTUM):
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.use_res_connect = stride == 1 and in_channels == out_channels
        layers = []
        if expand_ratio != 1:
            layers.append(ConvModule(in_channels, hidden, 1, act=act, bn_momentum=bn_momentum))
        layers += [
            ConvModule(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, act=act, bn_momentum=bn_momentum),
            ConvModule(hidden, out_channels, 1, act=None, bn_momentum=bn_momentum),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class PPM(nn.LayerList):
    """PSPNet pyramid pooling: per scale adaptive avg pool + 1x1 conv, upsampled to the input.

    Each branch is ``Sequential(pool, ConvModule)`` so names are ``ppm.<i>.1.conv.weight`` as
    mmseg's ``PPM``. Adaptive pooling bins match torch's for any input size.
    """

    def __init__(self, pool_scales, in_channels, channels, align_corners, bn_momentum):
        super().__init__([
            nn.Sequential(nn.AdaptiveAvgPool2D(s), ConvModule(in_channels, channels, 1, bn_momentum=bn_momentum))
            for s in pool_scales
        ])
        self.align_corners = align_corners

    def forward(self, x):
        size = input_hw(x)
        return [resize(branch(x), size, align_corners=self.align_corners) for branch in self]


class GlobalFeatureExtractor(nn.Layer):
    """Paper Sec. 3.2.2: bottleneck groups at 1/16, 1/32, 1/32, then pyramid pooling."""

    def __init__(self, in_channels, block_channels, out_channels, expand_ratio, num_blocks, strides,
                 pool_scales, align_corners, bn_momentum):
        super().__init__()
        chans = [in_channels] + list(block_channels)
        for g in range(3):
            blocks = [InvertedResidual(chans[g] if i == 0 else chans[g + 1], chans[g + 1],
                                       strides[g] if i == 0 else 1, expand_ratio, bn_momentum=bn_momentum)
                      for i in range(num_blocks[g])]
            setattr(self, f'bottleneck{g + 1}', nn.Sequential(*blocks))
        c = block_channels[2]
        self.ppm = PPM(pool_scales, c, c // 4, align_corners, bn_momentum)
        # concat of c and len(pool_scales) * c // 4 channels (= 2c for the 4 scales)
        self.out = ConvModule(c + len(pool_scales) * (c // 4), out_channels, 3, padding=1, bn_momentum=bn_momentum)

    def forward(self, x):
        x = self.bottleneck3(self.bottleneck2(self.bottleneck1(x)))
        x = paddle.concat([x] + self.ppm(x), axis=1)
        return self.out(x)


class FeatureFusionModule(nn.Layer):
    """Paper Sec. 3.2.3: add the upsampled global features to the 1/8 spatial-detail features."""

    def __init__(self, higher_in_channels, lower_in_channels, out_channels, align_corners, bn_momentum):
        super().__init__()
        self.align_corners = align_corners
        # mmseg: 3x3 depthwise with groups=out_channels, so lower_in_channels == out_channels
        self.dwconv = ConvModule(lower_in_channels, out_channels, 3, padding=1, groups=out_channels,
                                 bn_momentum=bn_momentum)
        self.conv_lower_res = ConvModule(out_channels, out_channels, 1, act=None, bn_momentum=bn_momentum)
        self.conv_higher_res = ConvModule(higher_in_channels, out_channels, 1, act=None, bn_momentum=bn_momentum)
        self.relu = nn.ReLU()

    def forward(self, higher, lower):
        lower = resize(lower, input_hw(higher), align_corners=self.align_corners)
        lower = self.conv_lower_res(self.dwconv(lower))
        return self.relu(self.conv_higher_res(higher) + lower)


class FastSCNNBackbone(nn.Layer):
    """Returns ``(higher_res 1/8, lower_res 1/32, fused 1/8)`` as mmseg's ``out_indices=(0, 1, 2)``."""

    def __init__(self, in_channels=3, downsample_dw_channels=(32, 48), global_in_channels=64,
                 global_block_channels=(64, 96, 128), global_block_strides=(2, 2, 1), global_out_channels=128,
                 fusion_out_channels=128, expand_ratio=6, num_blocks=(3, 3, 3), pool_scales=(1, 2, 3, 6),
                 align_corners=False, bn_momentum=FAST_SCNN_BN_MOMENTUM):
        super().__init__()
        if len(global_block_channels) != 3 or len(num_blocks) != 3 or len(global_block_strides) != 3:
            raise ConfigError('model.global_block_channels, num_blocks, global_block_strides: need 3 entries each, '
                              f'got {list(global_block_channels)}, {list(num_blocks)}, {list(global_block_strides)}')
        if global_out_channels != fusion_out_channels:
            raise ConfigError(f'model.fusion_out_channels: the fusion depthwise conv needs it equal to '
                              f'global_out_channels ({global_out_channels}), got {fusion_out_channels}')
        self.out_channels = (global_in_channels, global_out_channels, fusion_out_channels)
        self.learning_to_downsample = LearningToDownsample(in_channels, tuple(downsample_dw_channels),
                                                           global_in_channels, bn_momentum)
        self.global_feature_extractor = GlobalFeatureExtractor(
            global_in_channels, tuple(global_block_channels), global_out_channels, expand_ratio,
            tuple(num_blocks), tuple(global_block_strides), tuple(pool_scales), align_corners, bn_momentum)
        self.feature_fusion = FeatureFusionModule(global_in_channels, global_out_channels, fusion_out_channels,
                                                  align_corners, bn_momentum)

    def forward(self, x):
        higher = self.learning_to_downsample(x)
        lower = self.global_feature_extractor(higher)
        return higher, lower, self.feature_fusion(higher, lower)


def _init_like_mmseg(model):
    """mmseg init: convs Kaiming-normal (fan_out, ReLU gain, bias 0), BN weight 1 / bias 0.

    Both the backbone's ``init_cfg`` (Kaiming on Conv2d) and mmcv ConvModule's own init use
    fan_out; the heads' ``conv_seg`` keeps N(0, 0.01) set by the head.
    """
    layers = list(model.named_sublayers())
    kaiming_init([m for n, m in layers if isinstance(m, nn.Conv2D) and not n.endswith('conv_seg')])
    reset_norms([m for _, m in layers if isinstance(m, nn.BatchNorm2D)])


@MODELS.register()
class FastSCNN(Segmentor):
    """Fast-SCNN segmentor: backbone, depthwise-separable FCN decode head, two FCN aux heads.

    Args:
        num_classes: number of classes.
        align_corners: of every bilinear resize (mmseg: False).
        pretrained: weights for the whole model: ours, a weights-table name or an mmseg
            ``.pth`` (converted with the mmseg importer below).
        enable_auxiliary_loss: build the two auxiliary heads (train mode then returns
            ``[main, aux on GFE output, aux on learning-to-downsample output]``).
        head_channels / aux_channels: widths of the decode head / auxiliary heads.
        dropout_ratio: Dropout2D before each classifier (mmseg's 0.1).
        bn_momentum: Paddle BN momentum (0.99 = mmseg's SyncBN momentum 0.01).
        The remaining arguments are the mmseg backbone's, with its defaults.
    """

    def __init__(self, num_classes, align_corners=False, pretrained=None, enable_auxiliary_loss=True,
                 in_channels=3, downsample_dw_channels=(32, 48), global_in_channels=64,
                 global_block_channels=(64, 96, 128), global_block_strides=(2, 2, 1), global_out_channels=128,
                 fusion_out_channels=128, expand_ratio=6, num_blocks=(3, 3, 3), pool_scales=(1, 2, 3, 6),
                 head_channels=128, aux_channels=32, dropout_ratio=0.1, bn_momentum=FAST_SCNN_BN_MOMENTUM):
        super().__init__(num_classes, align_corners)
        self.backbone = FastSCNNBackbone(
            in_channels, downsample_dw_channels, global_in_channels, global_block_channels, global_block_strides,
            global_out_channels, fusion_out_channels, expand_ratio, num_blocks, pool_scales, align_corners,
            bn_momentum)
        higher_c, lower_c, fused_c = self.backbone.out_channels
        self.decode_head = DepthwiseSeparableFCNHead(fused_c, head_channels, num_classes, num_convs=2,
                                                     concat_input=False, dropout_ratio=dropout_ratio, in_index=-1,
                                                     bn_momentum=bn_momentum)
        if enable_auxiliary_loss:
            self.auxiliary_head = nn.LayerList([
                FCNHead(c, aux_channels, num_classes, num_convs=1, concat_input=False,
                        dropout_ratio=dropout_ratio, in_index=idx, bn_momentum=bn_momentum)
                for c, idx in ((lower_c, -2), (higher_c, -3))
            ])
        else:
            self.auxiliary_head = None
        _init_like_mmseg(self)
        self.init_pretrained(pretrained)


# mmseg ``EncoderDecoder`` + FastSCNN: the module trees are the same, only BN statistics are renamed
register_importer('FastSCNN', 'mmseg')(torch_key)

register_weights(config_weights(
    'FastSCNN', 'mmseg', 'https://download.openmmlab.com/mmsegmentation/v0.5/fast_scnn/fast_scnn_lr0.12_8x4_160k_cityscapes/fast_scnn_lr0.12_8x4_160k_cityscapes_20210630_164853-0cec9937.pth',
    'configs/fast_scnn/fast_scnn_cityscapes_512x1024_160k.yml', 'Cityscapes val mIoU', 70.96,
    'mmseg 1.x recipe: SGD lr 0.12, poly, batch 32 on 8 GPUs, 160k iterations'))
