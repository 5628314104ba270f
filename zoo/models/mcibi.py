"""MCIBI (Jin et al., "Mining Contextual Information Beyond Image for Semantic Segmentation",
ICCV 2021, arXiv:2108.11819): a segmentor with a dataset-level feature memory.

Pipeline (paper Fig. 2; sssegmentation ``segmentors/mcibi/{mcibi.py,memory.py}``):
backbone -> context within the image (ASPP on the last stage) and ``bottleneck`` (3x3 conv)
-> ``decoder_stage1`` (coarse logits) -> ``memory_module``: the memory
``[num_classes, feats_per_class, channels]`` is read by soft aggregation with the stage-1
class probabilities, related to the pixel features by self-attention, fused with them
(``bottleneck``) and with the ASPP context (``self_attention_ms``, ``bottleneck_ms``) ->
``decoder_stage2`` (final logits). An FCN-style ``auxiliary_decoder`` reads stage 3 (the
ViT-L rows: three of them, two convs with x4 upsampling each, on layers 9, 14 and 19).

The memory (``mcibi_memory.py``) is a persistable buffer (saved with checkpoints, no
gradient). During training it is updated after each optimizer step by
:meth:`MCIBI.train_step_hook` with the step's bottleneck features and labels, momentum
``base_momentum / base_lr * lr`` (paper Sec. 3.3). ``mcibi_memory_init.py`` initialises it by
clustering (``tools/init_memory.py``); the memory loss is ``zoo/losses/mcibi_memory_loss.py``.

Parameter names follow sssegmentation's module tree (unchanged from its 2021 ``memorynet``
to 1.7.0 ``mcibi``, the tree of the published checkpoints): ``Sequential`` indices such as
``decoder_stage1.0.weight``; only ``backbone_net.`` becomes ``backbone.`` and BN statistics
are renamed on import (:func:`sssegmentation_key`).
"""
import numpy as np
import paddle
import paddle.nn as nn

from zoo.models.backbones.vit import VisionTransformer, is_linear_weight
from zoo.models.convert import register_importer, torch_key
from zoo.models.layers import conv_bn_act, input_hw, make_act, resize, torch_default_init
from zoo.models.mcibi_memory import FeaturesMemory
from zoo.models.segmentor import Segmentor
from zoo.models.weights import config_weights, register_weights
from zoo.utils.errors import CheckpointError, ConfigError
from zoo.utils.registry import MODELS


class ASPP(nn.Layer):
    """sssegmentation's ASPP (``deeplabv3/aspp.py``): ``parallel_branches`` (1x1 conv at rate 1,
    else dilated 3x3), ``global_branch`` (image pool, 1x1 conv) concatenated after them, and a
    3x3 ``bottleneck``. Used as MCIBI's context-within-image module."""

    def __init__(self, in_channels, out_channels, dilations=(1, 12, 24, 36), align_corners=False, act='relu'):
        super().__init__()
        self.align_corners = align_corners
        self.parallel_branches = nn.LayerList([
            conv_bn_act(in_channels, out_channels, 1, act=act) if d == 1 else
            conv_bn_act(in_channels, out_channels, 3, padding=d, dilation=d, act=act) for d in dilations])
        self.global_branch = nn.Sequential(nn.AdaptiveAvgPool2D(1), *conv_bn_act(in_channels, out_channels, 1, act=act))
        self.bottleneck = conv_bn_act(out_channels * (len(dilations) + 1), out_channels, 3, padding=1, act=act)

    def forward(self, x):
        outs = [branch(x) for branch in self.parallel_branches]
        outs.append(resize(self.global_branch(x), input_hw(x), align_corners=self.align_corners))
        return self.bottleneck(paddle.concat(outs, axis=1))


class AuxiliaryDecoder(nn.Sequential):
    """sssegmentation's ``DefaultAuxiliaryDecoder`` (``segmentors/base/auxiliary.py``):
    ``num_convs`` x (3x3 conv-BN-act, then a nearest ``upsample`` by that scale if given),
    Dropout2d, 1x1 classifier. One conv without upsampling (the ResNet rows) gives indices
    0..4; two convs with upsampling (the ViT-L rows) 0..9, the second conv at 4x the feature
    resolution, as in the reference."""

    def __init__(self, in_channels, channels, num_classes, dropout=0.1, act='relu', num_convs=1, upsample=None,
                 in_index=-2):
        layers = []
        for i in range(num_convs):
            layers += list(conv_bn_act(in_channels if i == 0 else channels, channels, 3, padding=1, act=act))
            if upsample:
                layers.append(nn.Upsample(scale_factor=upsample, mode='nearest'))
        layers += [nn.Dropout2D(dropout), nn.Conv2D(channels if num_convs else in_channels, num_classes, 1)]
        super().__init__(*layers)
        self.in_index = in_index

    def forward(self, feats):
        """Reads backbone feature ``in_index`` (the one before the last, by default)."""
        return super().forward(feats[self.in_index])


def _decoder(channels, num_classes, dropout, act):
    return nn.Sequential(*conv_bn_act(channels, channels, 1, act=act), nn.Dropout2D(dropout),
                         nn.Conv2D(channels, num_classes, 1))


@MODELS.register()
class MCIBI(Segmentor):
    """DeepLabV3 (ASPP) with MCIBI's dataset-level memory.

    Args:
        num_classes: number of classes (rows of the memory).
        backbone: a built backbone (``type:`` dict) returning its stage features; the last one
            feeds the head, the one before it the auxiliary decoder.
        in_channels: channels of the last backbone stage (2048 for ResNet-50/101).
        feats_channels: width of the bottleneck features stored in the memory (512).
        transform_channels: key/query/value width of the self-attention blocks (256).
        out_channels: width of the fused features before ``decoder_stage2`` (512).
        num_feats_per_cls: memory slots per class (1 in every published config).
        use_hard_aggregate: read the memory with one-hot argmax instead of probabilities.
        aspp_dilations: rates of the context-within-image ASPP; ``[]`` turns the module off.
        dropout: of both decoders.
        aux_in_channels, aux_channels, aux_dropout: the auxiliary decoder on the feature before
            the last one (``aux_channels: 0`` removes it); ``aux_in_channels`` is checked against
            that feature (null: taken from it; 1024 for ResNet). A list of N channel counts builds one
            decoder per entry (``auxiliary_decoder.<i>``, sssegmentation's ``auxiliary`` list)
            on the N features before the last one, in order (ViT-L: layers 9, 14, 19).
        aux_num_convs, aux_upsample: 3x3 convs per auxiliary decoder and the nearest upsampling
            scale after each of them (ViT-L: 2 and 4; default 1 and none).
        act: activation of the head ('relu'; LIP uses 'leakyrelu:0.01').
        update_strategy: 'cosine_similarity' (the paper's) or 'mean'.
        memory_base_momentum, memory_base_lr, memory_adjust_by_lr: the update momentum is
            ``base_momentum / base_lr * lr`` (or ``base_momentum`` when not adjusted).
        ignore_index: label value skipped by the update.
        use_memory_loss: also classify the memory entries with ``decoder_stage2`` (the reference's
            ``use_loss``, on for ADE20K): a 4th training output for :class:`MCIBIMemoryLoss`.
        memory_loss_start_iter: the memory loss counts from the iteration after this one
            (sssegmentation: from the second epoch).
        memory_init: optional ``.npy`` file ``[num_classes, num_feats_per_cls, feats_channels]``
            from ``tools/init_memory.py``.
        align_corners: of every bilinear resize.
        pretrained: whole-model weights: ours, a weights-table name or an sssegmentation checkpoint.
    """

    training_only = ('auxiliary_decoder.',)

    def __init__(self, num_classes, backbone, in_channels=2048, feats_channels=512, transform_channels=256,
                 out_channels=512, num_feats_per_cls=1, use_hard_aggregate=False, aspp_dilations=(1, 12, 24, 36),
                 dropout=0.1, aux_in_channels=None, aux_channels=512, aux_dropout=0.1, aux_num_convs=1,
                 aux_upsample=None, act='relu',
                 update_strategy='cosine_similarity', memory_base_momentum=0.9, memory_base_lr=0.01,
                 memory_adjust_by_lr=True, ignore_index=255, use_memory_loss=False, memory_loss_start_iter=0,
                 memory_init=None, align_corners=False, pretrained=None):
        super().__init__(num_classes, align_corners)
        self.backbone = self.check_backbone(backbone, 'ResNetV1c')
        if backbone.feat_channels[-1] != in_channels:
            raise ConfigError(f'model.in_channels: {in_channels} does not match the backbone\'s last stage '
                              f'({backbone.feat_channels[-1]} channels)')
        if update_strategy not in ('cosine_similarity', 'mean'):
            raise ConfigError(f"model.update_strategy: expected 'cosine_similarity' or 'mean', got {update_strategy!r}")
        if update_strategy == 'mean' and num_feats_per_cls > 1:
            raise ConfigError("model.update_strategy: 'mean' needs num_feats_per_cls 1")
        try:
            make_act(act)
        except ValueError:
            raise ConfigError(f'model.act: unknown activation {act!r}') from None
        self.update_strategy = update_strategy
        self.memory_base_momentum = memory_base_momentum
        self.memory_base_lr = memory_base_lr
        self.memory_adjust_by_lr = memory_adjust_by_lr
        self.ignore_index = ignore_index
        self.use_memory_loss = use_memory_loss
        self.memory_loss_start_iter = memory_loss_start_iter
        aux_in = self._check_aux(backbone, aux_in_channels, aux_channels, aux_num_convs, aux_upsample)
        head = []
        if aspp_dilations:
            self.context_within_image_module = ASPP(in_channels, feats_channels, tuple(aspp_dilations),
                                                    align_corners, act)
            head.append(self.context_within_image_module)
        else:
            self.context_within_image_module = None
        self.bottleneck = conv_bn_act(in_channels, feats_channels, 3, padding=1, act=act)
        self.memory_module = FeaturesMemory(num_classes, feats_channels, transform_channels, out_channels,
                                            num_feats_per_cls, bool(aspp_dilations), use_hard_aggregate, act)
        self.decoder_stage1 = _decoder(feats_channels, num_classes, dropout, act)
        self.decoder_stage2 = _decoder(out_channels, num_classes, dropout, act)
        # sssegmentation keeps a one-entry ``auxiliary`` list as a bare decoder (its
        # ``setauxiliarydecoder``), so the single-decoder names stay ``auxiliary_decoder.<j>``
        # the N decoders read the N backbone features before the last one, in order
        decoders = [AuxiliaryDecoder(c, aux_channels, num_classes, aux_dropout, act, aux_num_convs, aux_upsample,
                                     in_index=i - 1 - len(aux_in)) for i, c in enumerate(aux_in)]
        self.auxiliary_decoder = None
        if len(decoders) == 1:
            self.auxiliary_decoder = decoders[0]
        elif decoders:
            self.auxiliary_decoder = nn.LayerList(decoders)
        head += decoders
        for layer in head + [self.bottleneck, self.memory_module, self.decoder_stage1, self.decoder_stage2]:
            torch_default_init(layer)
        self._cached_features = None
        self._iteration = 0
        if memory_init:
            self.load_memory(memory_init)
        self.init_pretrained(pretrained)

    @staticmethod
    def _check_aux(backbone, aux_in_channels, aux_channels, aux_num_convs, aux_upsample):
        """The auxiliary decoders' input channels (one per decoder; [] without them), checked
        against the backbone features they read: the ``len`` ones before the last."""
        if not aux_channels:
            return []
        if isinstance(aux_num_convs, bool) or not isinstance(aux_num_convs, int) or aux_num_convs < 0:
            raise ConfigError(f'model.aux_num_convs: expected an integer >= 0, got {aux_num_convs!r}')
        if aux_upsample is not None and (isinstance(aux_upsample, bool) or not isinstance(aux_upsample, (int, float))
                                         or aux_upsample <= 0):
            raise ConfigError(f'model.aux_upsample: expected a positive scale factor or null, got {aux_upsample!r}')
        have = list(backbone.feat_channels[:-1])
        if not have:
            raise ConfigError('model.aux_channels: the backbone has no feature before the last one for an auxiliary '
                              'decoder; set aux_channels: 0')
        if aux_in_channels is None:
            aux_in_channels = have[-1]
        many = isinstance(aux_in_channels, (list, tuple))
        aux_in = list(aux_in_channels) if many else [aux_in_channels]
        if not aux_in or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in aux_in):
            raise ConfigError(f'model.aux_in_channels: expected a positive integer or a non-empty list of them, '
                              f'got {aux_in_channels!r}')
        if len(aux_in) > len(have):
            raise ConfigError(f'model.aux_in_channels: {len(aux_in)} auxiliary decoders but the backbone has only '
                              f'{len(have)} feature(s) before the last one')
        want = have[len(have) - len(aux_in):]
        if aux_in != want:
            what = want if many else want[0]
            raise ConfigError(f'model.aux_in_channels: {aux_in_channels} does not match the backbone features '
                              f'before the last one ({what} channels)')
        return aux_in

    def load_memory(self, path):
        """Fill the memory from a ``.npy`` file written by ``tools/init_memory.py``."""
        try:
            arr = np.load(path)
        except (OSError, ValueError) as e:
            raise CheckpointError(f'model.memory_init: cannot read {path!r} ({e})') from None
        want = tuple(self.memory_module.memory.shape)
        if arr.shape != want:
            raise CheckpointError(f'model.memory_init: {path!r} has shape {list(arr.shape)}, expected {list(want)}')
        memory = self.memory_module.memory
        memory.set_value(paddle.to_tensor(arr.astype('float64')).astype(memory.dtype))

    @property
    def output_names(self):
        n = len(self.auxiliary_heads())
        aux = ['aux'] if n == 1 else [f'aux{i + 1}' for i in range(n)]
        return ['stage2', 'stage1'] + aux + (['memory'] if self.use_memory_loss else [])

    def auxiliary_heads(self):
        dec = self.auxiliary_decoder
        return [] if dec is None else list(dec) if isinstance(dec, nn.LayerList) else [dec]

    def decode(self, feats):
        """Head on the last backbone feature: [stage-2 logits, stage-1 logits]; in training the
        memory input (bottleneck features) is kept for :meth:`train_step_hook`."""
        top = feats[-1]
        feats_ms = self.context_within_image_module(top) if self.context_within_image_module is not None else None
        memory_input = self.bottleneck(top)
        preds_stage1 = self.decoder_stage1(memory_input)
        memory_output = self.memory_module(memory_input, preds_stage1, feats_ms)
        if self.training:
            self._cached_features = memory_input.detach()
        return [self.decoder_stage2(memory_output), preds_stage1]

    def forward(self, x):
        outs = super().forward(x)
        if self.training and self.use_memory_loss:
            outs.append(self.memory_logits())
        return outs

    def memory_logits(self):
        """``decoder_stage2`` on every memory entry: [K * F, num_classes, 1, 1] (empty before
        ``memory_loss_start_iter``, so the loss is 0 and decoder_stage2's BN is untouched)."""
        if self._iteration + 1 <= self.memory_loss_start_iter:
            return paddle.zeros([0, self.num_classes, 1, 1], self.memory_module.memory.dtype)
        mem = self.memory_module.memory.detach()
        return self.decoder_stage2(mem.reshape([-1, mem.shape[-1], 1, 1]))

    def memory_momentum(self, lr):
        if self.memory_adjust_by_lr:
            return self.memory_base_momentum / self.memory_base_lr * float(lr)
        return self.memory_base_momentum

    def train_step_hook(self, labels, lr, iteration):
        """Called by the trainer after each optimizer step: update the memory with the
        features of the step's forward pass and its labels."""
        self._iteration = int(iteration)
        feats, self._cached_features = self._cached_features, None
        if feats is None:
            return
        self.memory_module.update(feats, labels, self.memory_momentum(lr), self.ignore_index,
                                  self.update_strategy, self.align_corners)


# -- importer -------------------------------------------------------------------------

def sssegmentation_value(key, value, model):
    """A ViT backbone's torch Linear weights [out, in] -> Paddle's [in, out]."""
    if isinstance(model.backbone, VisionTransformer) and key.startswith('backbone.') and is_linear_weight(key):
        return np.ascontiguousarray(np.asarray(value).T)
    return value


@register_importer('MCIBI', 'sssegmentation', value=sssegmentation_value)
def sssegmentation_key(key, model=None):
    """sssegmentation MCIBI checkpoints (``{'model': state_dict}``; the tree is the same from
    the 2021 ``memorynet`` that trained the published weights to 1.7.0), key by key; BN
    statistics renamed.

    ``backbone_net.`` -> ``backbone.`` (its ResNet uses mmseg/torchvision names: ``stem.<i>``,
    ``layer<n>.<j>``, ``downsample.<i>``; its ViT our names); the segmentor-level ViT
    ``norm_layers.<i>`` (head ``norm_cfg``) -> ``backbone.norm_layers.<i>`` (our
    ``VisionTransformer(out_norm=True)`` owns them); HRNet's ``downsample_backbone.`` ->
    ``backbone.downsample_backbone.``; a DataParallel ``module.`` prefix is dropped."""
    if key.startswith('module.'):
        key = key[len('module.'):]
    if key.startswith('backbone_net.'):
        key = 'backbone.' + key[len('backbone_net.'):]
    elif key.startswith(('downsample_backbone.', 'norm_layers.')):
        key = 'backbone.' + key
    return torch_key(key)



def _sssegmentation(config, metric, miou, batch_epochs, file_name):
    return config_weights('MCIBI', 'sssegmentation', _SSSEG_RELEASE + file_name, f'configs/mcibi/{config}', metric,
                          miou, f'sssegmentation recipe: SGD, poly, batch / epochs {batch_epochs}')


_SSSEG_RELEASE = 'https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_mcibi/'
register_weights(
    _sssegmentation('mcibi_r50-d8_cocostuff10k_512x512_110e.yml', 'COCO-Stuff-10k test mIoU', 38.84, '16/110',
                    'mcibi_deeplabv3_r50_cocostuff10k.pth'),
    _sssegmentation('mcibi_r101-d8_cocostuff10k_512x512_110e.yml', 'COCO-Stuff-10k test mIoU', 39.84, '16/110',
                    'mcibi_deeplabv3_r101_cocostuff10k.pth'),
    _sssegmentation('mcibi_r50-d8_ade20k_512x512_130e.yml', 'ADE20K val mIoU', 44.39, '16/130',
                    'mcibi_deeplabv3_r50_ade20k.pth'),
    _sssegmentation('mcibi_r101-d8_ade20k_512x512_130e.yml', 'ADE20K val mIoU', 45.66, '16/130',
                    'mcibi_deeplabv3_r101_ade20k.pth'),
    _sssegmentation('mcibi_r50-d8_cityscapes_512x1024_440e.yml', 'Cityscapes test mIoU (ms+flip)', 79.90, '16/440',
                    'mcibi_deeplabv3_r50_cityscapes.pth'),
    _sssegmentation('mcibi_r101-d8_cityscapes_512x1024_440e.yml', 'Cityscapes test mIoU (ms+flip)', 82.03, '16/440',
                    'mcibi_deeplabv3_r101_cityscapes.pth'),
    _sssegmentation('mcibi_r50-d8_lip_473x473_150e.yml', 'LIP val mIoU', 53.73, '32/150',
                    'mcibi_deeplabv3_r50_lip.pth'),
    _sssegmentation('mcibi_r101-d8_lip_473x473_150e.yml', 'LIP val mIoU', 55.02, '32/150',
                    'mcibi_deeplabv3_r101_lip.pth'),
    _sssegmentation('mcibi_vit-large_cocostuff10k_512x512_110e.yml', 'COCO-Stuff-10k test mIoU', 44.01, '16/110',
                    'mcibi_deeplabv3_vitlarge_cocostuff10k.pth'),
    _sssegmentation('mcibi_s101-d8_cocostuff10k_512x512_150e.yml', 'COCO-Stuff-10k test mIoU', 41.18, '32/150',
                    'mcibi_deeplabv3_s101_cocostuff10k.pth'),
    _sssegmentation('mcibi_hrnetv2-w48_cocostuff10k_512x512_110e.yml', 'COCO-Stuff-10k test mIoU', 39.77, '16/110',
                    'mcibi_deeplabv3_hrnetv2w48_cocostuff10k.pth'),
    _sssegmentation('mcibi_vit-large_ade20k_512x512_130e.yml', 'ADE20K val mIoU', 49.73, '16/130',
                    'mcibi_deeplabv3_vitlarge_ade20k.pth'),
    _sssegmentation('mcibi_s101-d8_ade20k_512x512_180e.yml', 'ADE20K val mIoU', 46.63, '16/180',
                    'mcibi_deeplabv3_s101_ade20k.pth'),
    _sssegmentation('mcibi_hrnetv2-w48_ade20k_512x512_180e.yml', 'ADE20K val mIoU', 45.79, '16/180',
                    'mcibi_deeplabv3_hrnetv2w48_ade20k.pth'),
    _sssegmentation('mcibi_s101-d8_cityscapes_512x1024_500e.yml', 'Cityscapes test mIoU (ms+flip)', 81.59, '16/500',
                    'mcibi_deeplabv3_s101_cityscapes.pth'),
    _sssegmentation('mcibi_hrnetv2-w48_cityscapes_512x1024_500e.yml', 'Cityscapes test mIoU (ms+flip)', 82.55, '16/500',
                    'mcibi_deeplabv3_hrnetv2w48_cityscapes.pth'),
    _sssegmentation('mcibi_s101-d8_lip_473x473_150e.yml', 'LIP val mIoU', 56.21, '40/150',
                    'mcibi_deeplabv3_s101_lip.pth'),
    _sssegmentation('mcibi_hrnetv2-w48_lip_473x473_150e.yml', 'LIP val mIoU', 56.40, '40/150',
                    'mcibi_deeplabv3_hrnetv2w48_lip.pth'),
)
