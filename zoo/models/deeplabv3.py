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

from zoo.models.backbones.resnet import paddleseg_resnet_vd_key
from zoo.models.convert import register_importer, torch_key
from zoo.models.heads.aspp_head import ASPPHead
from zoo.models.heads.fcn_head import FCNHead
from zoo.models.segmentor import Segmentor
from zoo.models.weights import config_weights, register_weights
from zoo.utils.errors import CheckpointError, ConfigError
from zoo.utils.registry import MODELS

_AUX_KEYS = ('in_channels', 'channels', 'num_convs', 'kernel_size', 'dilation', 'concat_input',
             'dropout_ratio', 'in_index')


@MODELS.register()
class DeepLabV3(Segmentor):
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
        pretrained: whole-model weights: ours, a weights-table name, PaddleSeg's DeepLabV3
            ``model.pdparams`` or mmseg's ``.pth`` (converted by the importers below).
    """

    def __init__(self, num_classes, backbone, backbone_indices=(3,), aspp_ratios=(1, 6, 12, 18),
                 aspp_out_channels=256, bottleneck_kernel=1, conv_bias=True, dropout_ratio=0.1,
                 channel_dropout=False, auxiliary_head=None, align_corners=False, pretrained=None):
        super().__init__(num_classes, align_corners)
        self.backbone = self.check_backbone(backbone, 'ResNet50_vd')
        if len(backbone_indices) != 1:
            raise ConfigError(f'model.backbone_indices: DeepLabV3 takes one index, got {list(backbone_indices)}')
        index = backbone_indices[0]
        self.decode_head = ASPPHead(backbone.feat_channels[index], aspp_out_channels, num_classes,
                                    dilations=tuple(aspp_ratios), bottleneck_kernel=bottleneck_kernel,
                                    conv_bias=conv_bias, dropout_ratio=dropout_ratio,
                                    channel_dropout=channel_dropout, in_index=index, align_corners=align_corners)
        self.auxiliary_head = None
        if auxiliary_head:
            self.auxiliary_head = _build_aux_head(auxiliary_head, num_classes, backbone.feat_channels)
        self.init_pretrained(pretrained)


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
    try:
        return FCNHead(num_classes=num_classes, **cfg)
    except ConfigError as e:  # the head names its argument; the user wrote it under model.auxiliary_head
        raise ConfigError(f'model.auxiliary_head.{e}') from None


# -- importers ------------------------------------------------------------------------

def _projection_pool_first(w, channels, num_branches):
    """PaddleSeg concatenates [branches..., image pool]; we concatenate [pool, branches...].
    Reorder the projection conv's input-channel blocks to match."""
    w = np.asarray(w)
    blocks = [w[:, i * channels:(i + 1) * channels] for i in range(num_branches + 1)]
    return np.concatenate([blocks[-1]] + blocks[:-1], axis=1)


_PDSEG_HEAD = (('head.aspp.aspp_blocks.', 'decode_head.aspp_modules.'),
               ('head.aspp.global_avg_pool.1.', 'decode_head.image_pool.1.'),
               ('head.aspp.conv_bn_relu.', 'decode_head.bottleneck.'),
               ('head.cls.', 'decode_head.conv_seg.'))


def paddleseg_value(key, value, model):
    """The projection conv's input blocks reordered pool-first (see :func:`_projection_pool_first`)."""
    if key != 'decode_head.bottleneck.conv.weight':
        return value
    head = model.decode_head
    num_branches, channels = len(head.aspp_modules), head.channels
    if np.shape(value)[1] != channels * (num_branches + 1):
        raise CheckpointError(f'head.aspp.conv_bn_relu._conv.weight: {np.shape(value)[1]} input channels, the model '
                              f'expects {channels * (num_branches + 1)} ({num_branches} ASPP rates + pool)')
    return _projection_pool_first(value, channels, num_branches)


def _is_paddleseg_deeplabv3(state_dict):
    return any(k.startswith('head.aspp.') for k in state_dict)


@register_importer('DeepLabV3', 'paddleseg', value=paddleseg_value, detect=_is_paddleseg_deeplabv3)
def paddleseg_key(key, model):
    """PaddleSeg 2.8 DeepLabV3 (ResNet_vd backbone): ``backbone.conv1_1._conv.weight``,
    ``head.aspp.aspp_blocks.<i>``, ``head.aspp.global_avg_pool.1``,
    ``head.aspp.conv_bn_relu``, ``head.cls``."""
    if key.startswith('backbone.'):
        new = paddleseg_resnet_vd_key(key[len('backbone.'):])
        if new is None:
            raise CheckpointError(f'PaddleSeg ResNet_vd key {key!r} has no counterpart in our ResNet')
        return 'backbone.' + new
    for src, dst in _PDSEG_HEAD:
        if key.startswith(src):
            return (dst + key[len(src):]).replace('._conv.', '.conv.').replace('._batch_norm.', '.bn.')
    raise CheckpointError(f'PaddleSeg DeepLabV3 key {key!r} has no counterpart in our DeepLabV3')


# mmseg 1.x DeepLabV3 (``EncoderDecoder``): our names already; BN statistics renamed
register_importer('DeepLabV3', 'mmseg')(torch_key)


_RECIPES = {'paddleseg': 'PaddleSeg dygraph recipe: SGD lr 0.01, poly, batch 8 on 4 GPUs',
            'mmseg': 'mmseg 1.x recipe: SGD lr 0.01, poly, batch 8 on 4 GPUs, SyncBN'}
register_weights(*[config_weights('DeepLabV3', source, url, f'configs/deeplabv3/{config}', f'{dataset} val mIoU', miou,
                                  _RECIPES[source]) for source, config, dataset, miou, url in (
    ('paddleseg', 'deeplabv3_resnet50-vd-os8_cityscapes_512x1024_80k.yml',
     'Cityscapes', 79.90,
     'https://bj.bcebos.com/paddleseg/dygraph/cityscapes/deeplabv3_resnet50_os8_cityscapes_1024x512_80k/model.pdparams'),
    ('paddleseg', 'deeplabv3_resnet101-vd-os8_cityscapes_512x1024_80k.yml',
     'Cityscapes', 80.85,
     'https://bj.bcebos.com/paddleseg/dygraph/cityscapes/deeplabv3_resnet101_os8_cityscapes_1024x512_80k/model.pdparams'),
    ('paddleseg', 'deeplabv3_resnet50-vd-os8_voc12aug_512x512_40k.yml',
     'Pascal VOC 2012', 79.76,
     'https://bj.bcebos.com/paddleseg/dygraph/pascal_voc12/deeplabv3_resnet50_os8_voc12aug_512x512_40k/model.pdparams'),
    ('paddleseg', 'deeplabv3_resnet101-vd-os8_voc12aug_512x512_40k.yml',
     'Pascal VOC 2012', 80.62,
     'https://bj.bcebos.com/paddleseg/dygraph/pascal_voc12/deeplabv3_resnet101_os8_voc12aug_512x512_40k/model.pdparams'),
    ('mmseg', 'deeplabv3_r50-d8_cityscapes_512x1024_80k.yml',
     'Cityscapes', 79.32,
     'https://download.openmmlab.com/mmsegmentation/v0.5/deeplabv3/deeplabv3_r50-d8_512x1024_80k_cityscapes/deeplabv3_r50-d8_512x1024_80k_cityscapes_20200606_113404-b92cfdd4.pth'),
    ('mmseg', 'deeplabv3_r101-d8_cityscapes_512x1024_80k.yml',
     'Cityscapes', 80.20,
     'https://download.openmmlab.com/mmsegmentation/v0.5/deeplabv3/deeplabv3_r101-d8_512x1024_80k_cityscapes/deeplabv3_r101-d8_512x1024_80k_cityscapes_20200606_113503-9e428899.pth'),
)])
