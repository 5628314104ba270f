"""DMNet: Dynamic Multi-scale Filters for Semantic Segmentation (He, Deng, Qiao, ICCV 2019).

A ResNet backbone (mmseg's "R-50-D8" / "R-101-D8": ``ResNetV1c``, output stride 8) with
``DMHead`` (``heads/dm_head.py``: one Dynamic Convolutional Module per filter size, paper
Sec. 3, Fig. 2) and mmseg's auxiliary ``FCNHead`` on stage 3 (loss weight 0.4 in the configs).

The module tree follows mmsegmentation 1.x (``EncoderDecoder``: ``backbone.*``,
``decode_head.*``, ``auxiliary_head.*``), so importing an mmseg checkpoint renames BN
statistics only. The 769x769 configs resize with ``align_corners=True``, which
``layers.resize`` computes in a form Paddle Inference's oneDNN gets right.
"""
from zoo.models.convert import register_importer, torch_key
from zoo.models.heads.dm_head import DMHead
from zoo.models.heads.fcn_head import FCNHead
from zoo.models.layers import init_conv_modules
from zoo.models.segmentor import Segmentor
from zoo.models.weights import config_weights, register_weights
from zoo.utils.errors import ConfigError
from zoo.utils.registry import MODELS


@MODELS.register()
class DMNet(Segmentor):
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
        pretrained: whole-model weights: ours, a weights-table name or an mmseg DMNet checkpoint.
    """

    def __init__(self, num_classes, backbone, backbone_indices=(2, 3), channels=512, filter_sizes=(1, 3, 5, 7),
                 fusion=False, dropout_ratio=0.1, enable_auxiliary_loss=True, aux_channels=256,
                 align_corners=False, pretrained=None):
        super().__init__(num_classes, align_corners)
        self.backbone = self.check_backbone(backbone, 'ResNetV1c')
        if len(backbone_indices) != 2:
            raise ConfigError(f'model.backbone_indices: expected [aux_index, decode_index], got {backbone_indices!r}')
        nfeat = len(backbone.feat_channels)
        if any(not -nfeat <= int(i) < nfeat for i in backbone_indices):
            raise ConfigError(f'model.backbone_indices: {list(backbone_indices)} out of range for a backbone '
                              f'with {nfeat} outputs')
        aux_index, decode_index = (int(i) for i in backbone_indices)
        self.decode_head = DMHead(backbone.feat_channels[decode_index], channels, num_classes, filter_sizes, fusion,
                                  dropout_ratio, in_index=decode_index)
        self.auxiliary_head = None
        if enable_auxiliary_loss:
            self.auxiliary_head = FCNHead(backbone.feat_channels[aux_index], aux_channels, num_classes, num_convs=1,
                                          concat_input=False, dropout_ratio=dropout_ratio, in_index=aux_index)
            init_conv_modules(self.auxiliary_head)  # mmcv's ConvModule init, which mmseg's FCNHead keeps
        self.init_pretrained(pretrained)


# mmseg ``EncoderDecoder`` + ``DMHead``: the trees match, BN statistics are renamed
register_importer('DMNet', 'mmseg')(torch_key)


_RECIPE = 'mmseg 1.x recipe: SGD lr 0.01, poly, batch 8 on 4 GPUs, SyncBN'
register_weights(*[config_weights('DMNet', 'mmseg', url, f'configs/dmnet/{config}', f'{dataset} val mIoU', miou,
                                  _RECIPE) for config, dataset, miou, url in (
    ('dmnet_r50-d8_cityscapes_512x1024_40k.yml', 'Cityscapes', 77.78,
     'https://download.openmmlab.com/mmsegmentation/v0.5/dmnet/dmnet_r50-d8_512x1024_40k_cityscapes/dmnet_r50-d8_512x1024_40k_cityscapes_20201215_042326-615373cf.pth'),
    ('dmnet_r101-d8_cityscapes_512x1024_40k.yml', 'Cityscapes', 78.37,
     'https://download.openmmlab.com/mmsegmentation/v0.5/dmnet/dmnet_r101-d8_512x1024_40k_cityscapes/dmnet_r101-d8_512x1024_40k_cityscapes_20201215_043100-8291e976.pth'),
    ('dmnet_r50-d8_cityscapes_769x769_40k.yml', 'Cityscapes', 78.49,
     'https://download.openmmlab.com/mmsegmentation/v0.5/dmnet/dmnet_r50-d8_769x769_40k_cityscapes/dmnet_r50-d8_769x769_40k_cityscapes_20201215_093706-e7f0e23e.pth'),
    ('dmnet_r101-d8_cityscapes_769x769_40k.yml', 'Cityscapes', 77.62,
     'https://download.openmmlab.com/mmsegmentation/v0.5/dmnet/dmnet_r101-d8_769x769_40k_cityscapes/dmnet_r101-d8_769x769_40k_cityscapes_20201215_081348-a74261f6.pth'),
    ('dmnet_r50-d8_cityscapes_512x1024_80k.yml', 'Cityscapes', 79.07,
     'https://download.openmmlab.com/mmsegmentation/v0.5/dmnet/dmnet_r50-d8_512x1024_80k_cityscapes/dmnet_r50-d8_512x1024_80k_cityscapes_20201215_053728-3c8893b9.pth'),
    ('dmnet_r101-d8_cityscapes_512x1024_80k.yml', 'Cityscapes', 79.64,
     'https://download.openmmlab.com/mmsegmentation/v0.5/dmnet/dmnet_r101-d8_512x1024_80k_cityscapes/dmnet_r101-d8_512x1024_80k_cityscapes_20201215_031718-fa081cb8.pth'),
    ('dmnet_r50-d8_cityscapes_769x769_80k.yml', 'Cityscapes', 79.22,
     'https://download.openmmlab.com/mmsegmentation/v0.5/dmnet/dmnet_r50-d8_769x769_80k_cityscapes/dmnet_r50-d8_769x769_80k_cityscapes_20201215_034006-6060840e.pth'),
    ('dmnet_r101-d8_cityscapes_769x769_80k.yml', 'Cityscapes', 79.19,
     'https://download.openmmlab.com/mmsegmentation/v0.5/dmnet/dmnet_r101-d8_769x769_80k_cityscapes/dmnet_r101-d8_769x769_80k_cityscapes_20201215_082810-7f0de59a.pth'),
    ('dmnet_r50-d8_ade20k_512x512_80k.yml', 'ADE20K', 42.37,
     'https://download.openmmlab.com/mmsegmentation/v0.5/dmnet/dmnet_r50-d8_512x512_80k_ade20k/dmnet_r50-d8_512x512_80k_ade20k_20201215_144744-f89092a6.pth'),
    ('dmnet_r101-d8_ade20k_512x512_80k.yml', 'ADE20K', 45.34,
     'https://download.openmmlab.com/mmsegmentation/v0.5/dmnet/dmnet_r101-d8_512x512_80k_ade20k/dmnet_r101-d8_512x512_80k_ade20k_20201215_104812-bfa45311.pth'),
    ('dmnet_r50-d8_ade20k_512x512_160k.yml', 'ADE20K', 43.15,
     'https://download.openmmlab.com/mmsegmentation/v0.5/dmnet/dmnet_r50-d8_512x512_160k_ade20k/dmnet_r50-d8_512x512_160k_ade20k_20201215_115313-025ab3f9.pth'),
    ('dmnet_r101-d8_ade20k_512x512_160k.yml', 'ADE20K', 45.42,
     'https://download.openmmlab.com/mmsegmentation/v0.5/dmnet/dmnet_r101-d8_512x512_160k_ade20k/dmnet_r101-d8_512x512_160k_ade20k_20201215_111145-a0bc02ef.pth'),
)])
