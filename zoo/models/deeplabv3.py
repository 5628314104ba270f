"""DeepLabV3 (Chen et al., "Rethinking Atrous Convolution for Semantic Image Segmentation",
arXiv:1706.05587): an atrous ResNet (output stride 8 or 16) and an ASPP head, plus
optionally mmseg's FCN auxiliary head on stage 3.

Parameter names follow mmseg (``backbone.*``, ``decode_head.*``, ``auxiliary_head.*``).
Importers live here: PaddleSeg 2.8 (``paddleseg/models/deeplab.py`` with
``backbones/resnet_vd.py`` and ``layers/pyramid_pool.py``) and mmseg 1.x
(``EncoderDecoder`` with ``ResNetV1c``, ``ASPPHead``, ``FCNHead``).
"""
import copy

import numpy as np
import paddle.nn as nn

from zoo.utils.checkpoint import load_pretrained
from zoo.utils.errors import CheckpointError, ConfigError
from zoo.utils.registry import MODELS

from .backbones.resnet import paddleseg_resnet_vd_to_ours
from .convert import convert, register_importer, torch_to_paddle_names
from .heads.aspp_head import ASPPHead
from .heads.fcn_head import FCNHead
from .layers import input_hw, upsample_outputs

_AUX_KEYS = ('in_channels', 'channels', 'num_convs', 'kernel_size', 'dilation', 'concat_input',
             'dropout_ratio', 'in_index')


@MODELS.register()
class DeepLabV3(nn.Layer):
    """DeepLabV3: backbone -> ASPP head (+ FCN auxiliary head in training).

    Args:
        num_classes: number of classes.
        backbone: a built backbone layer (``type:`` dict in a config) returning a list of
            stage features and exposing ``feat_channels``.
        backbone_indices: ``[i]``, the feature fed to ASPP (PaddleSeg's name for ``in_index``).
        aspp_ratios: ASPP rates; [1, 12, 24, 36] at output stride 8, [1, 6, 12, 18] at 16.
        aspp_out_channels: width of the ASPP branches and projection (PaddleSeg 256, mmseg 512).
        bottleneck_kernel: projection conv kernel (PaddleSeg 1, mmseg 3).
        conv_bias: bias in ASPP branch/projection convs (PaddleSeg true, mmseg false).
        dropout_ratio: dropout before the classifier (both 0.1).
        channel_dropout: Dropout2D as mmseg (true) or element-wise as PaddleSeg (false).
        auxiliary_head: None, or FCNHead options ``{in_index, in_channels, channels,
            num_convs, kernel_size, dilation, concat_input, dropout_ratio}`` (mmseg's
            R-50-D8 recipe: in_index 2, in_channels 1024, channels 256, num_convs 1,
            concat_input false, dropout_ratio 0.1). Its logits come second in training.
        align_corners: of every bilinear resize.
        pretrained: path or URL of a whole-model checkpoint: ours, PaddleSeg's DeepLabV3
            ``model.pdparams`` or mmseg's ``.pth`` (converted by the importers below).
    """

    def __init__(self, num_classes, backbone, backbone_indices=(3,), aspp_ratios=(1, 6, 12, 18),
                 aspp_out_channels=256, bottleneck_kernel=1, conv_bias=True, dropout_ratio=0.1,
                 channel_dropout=False, auxiliary_head=None, align_corners=False, pretrained=None):
        super().__init__()
        if not isinstance(backbone, nn.Layer) or not hasattr(backbone, 'feat_channels'):
            raise ConfigError(f'model.backbone: expected a backbone type dict (e.g. ResNet50_vd), got {backbone!r}')
        if len(backbone_indices) != 1:
            raise ConfigError(f'model.backbone_indices: DeepLabV3 takes one index, got {list(backbone_indices)}')
        self.backbone = backbone
        self.align_corners = align_corners
        index = backbone_indices[0]
        self.decode_head = ASPPHead(backbone.feat_channels[index], aspp_out_channels, num_classes,
                                    dilations=tuple(aspp_ratios), bottleneck_kernel=bottleneck_kernel,
                                    conv_bias=conv_bias, dropout_ratio=dropout_ratio,
                                    channel_dropout=channel_dropout, in_index=index, align_corners=align_corners)
        self.auxiliary_head = None
        if auxiliary_head:
            self.auxiliary_head = _build_aux_head(auxiliary_head, num_classes, backbone.feat_channels)
        self.pretrained = pretrained
        if pretrained:
            load_pretrained(self, pretrained, converter=self._foreign_checkpoint_to_ours, strict=True)

    def _foreign_checkpoint_to_ours(self, sd):
        """``pretrained`` may be ours, a PaddleSeg DeepLabV3 ``model.pdparams`` or an mmseg
        ``.pth``: foreign layouts (told apart by their key names) go through the importer."""
        sd = {k: (v.numpy() if hasattr(v, 'numpy') else np.asarray(v)) for k, v in sd.items()}
        if any(k.startswith('head.aspp.') for k in sd):
            return convert(self, 'paddleseg', sd)
        if any(k.endswith('.running_mean') for k in sd):
            return convert(self, 'mmseg', sd)
        return sd

    def forward(self, x):
        feats = self.backbone(x)
        logits = [self.decode_head(feats)]
        if self.training and self.auxiliary_head is not None:
            logits.append(self.auxiliary_head(feats))
        return upsample_outputs(logits, input_hw(x), self.align_corners)


def _build_aux_head(cfg, num_classes, feat_channels):
    if not isinstance(cfg, dict):
        raise ConfigError(f'model.auxiliary_head: expected a mapping of FCNHead options, got {cfg!r}')
    unknown = sorted(set(cfg) - set(_AUX_KEYS))
    if unknown:
        raise ConfigError(f'model.auxiliary_head.{unknown[0]}: unknown option (accepted: {", ".join(_AUX_KEYS)})')
    cfg = copy.deepcopy(cfg)
    cfg.setdefault('in_index', 2)
    cfg.setdefault('in_channels', feat_channels[cfg['in_index']])
    cfg.setdefault('channels', 256)
    if cfg['in_channels'] != feat_channels[cfg['in_index']]:
        raise ConfigError(f'model.auxiliary_head.in_channels: {cfg["in_channels"]} does not match the backbone '
                          f'feature {cfg["in_index"]} ({feat_channels[cfg["in_index"]]} channels)')
    return FCNHead(num_classes=num_classes, **cfg)


# -- importers ------------------------------------------------------------------------

def _projection_pool_first(w, channels, num_branches):
    """PaddleSeg concatenates [branches..., image pool]; we concatenate [pool, branches...].
    Reorder the projection conv's input-channel blocks to match."""
    w = np.asarray(w)
    blocks = [w[:, i * channels:(i + 1) * channels] for i in range(num_branches + 1)]
    return np.concatenate([blocks[-1]] + blocks[:-1], axis=1)


@register_importer('DeepLabV3', 'paddleseg')
def import_paddleseg(sd, model):
    """PaddleSeg 2.8 DeepLabV3 (ResNet_vd backbone): ``backbone.conv1_1._conv.weight``,
    ``head.aspp.aspp_blocks.<i>``, ``head.aspp.global_avg_pool.1``,
    ``head.aspp.conv_bn_relu``, ``head.cls``."""
    out = paddleseg_resnet_vd_to_ours(sd, 'backbone.', 'backbone.')
    head = model.decode_head
    num_branches = len(head.aspp_modules)
    channels = head.conv_seg.weight.shape[1]
    renamed = {}
    for k, v in out.items():
        if k.startswith('backbone.'):
            renamed[k] = v
            continue
        new = None
        for src, dst in (('head.aspp.aspp_blocks.', 'decode_head.aspp_modules.'),
                         ('head.aspp.global_avg_pool.1.', 'decode_head.image_pool.1.'),
                         ('head.aspp.conv_bn_relu.', 'decode_head.bottleneck.'),
                         ('head.cls.', 'decode_head.conv_seg.')):
            if k.startswith(src):
                new = dst + k[len(src):]
                break
        if new is None:
            raise CheckpointError(f'PaddleSeg DeepLabV3 key {k!r} has no counterpart in our DeepLabV3')
        new = new.replace('._conv.', '.conv.').replace('._batch_norm.', '.bn.')
        if new == 'decode_head.bottleneck.conv.weight':
            if np.shape(v)[1] != channels * (num_branches + 1):
                raise CheckpointError(f'{k}: {np.shape(v)[1]} input channels, the model expects '
                                      f'{channels * (num_branches + 1)} ({num_branches} ASPP rates + pool)')
            v = _projection_pool_first(v, channels, num_branches)
        renamed[new] = v
    return renamed


@register_importer('DeepLabV3', 'mmseg')
def import_mmseg(sd, model):
    """mmseg 1.x DeepLabV3 (``EncoderDecoder``): our names already; BN statistics renamed."""
    return torch_to_paddle_names(sd)
