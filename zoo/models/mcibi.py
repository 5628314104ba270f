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

The memory is a persistable buffer (saved with checkpoints, no gradient). During training it
is updated after each optimizer step by :meth:`MCIBI.train_step_hook` (paper Sec. 3.3,
Eq. 5-6): per class present in the batch, the pixel features labelled with it (the
bottleneck features bilinearly resized to the label) are averaged with weights
``1 - cos(feature, memory)`` and folded in with momentum ``base_momentum / base_lr * lr``;
a class seen for the first time is initialised with its mean feature; ranks average their
memories (all-reduce) in distributed training.

Parameter names follow sssegmentation's module tree (unchanged from its 2021 ``memorynet``
to 1.7.0 ``mcibi``, the tree of the published checkpoints): ``Sequential`` indices such as
``decoder_stage1.0.weight``; only ``backbone_net.`` becomes ``backbone.`` and BN statistics
are renamed on import (:func:`import_sssegmentation`).
"""
import math

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from zoo.utils.checkpoint import load_pretrained
from zoo.utils.errors import ConfigError
from zoo.utils.registry import LOSSES, MODELS

from .backbones.vit import VisionTransformer, is_linear_weight
from .convert import register_importer, torch_to_paddle_names
from .layers import BN_EPS, BN_MOMENTUM, input_hw, make_act, resize


def _cba(in_channels, out_channels, kernel_size=1, padding=0, dilation=1, act='relu'):
    return [nn.Conv2D(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias_attr=False),
            nn.BatchNorm2D(out_channels, momentum=BN_MOMENTUM, epsilon=BN_EPS),
            make_act(act)]


def conv_bn_act(in_channels, out_channels, kernel_size=1, padding=0, dilation=1, act='relu'):
    """sssegmentation's ``Sequential(Conv2d(bias=False), BN, activation)`` (indices 0, 1, 2)."""
    return nn.Sequential(*_cba(in_channels, out_channels, kernel_size, padding, dilation, act))


def torch_default_conv_init(layer):
    """PyTorch's default Conv2d init (kaiming_uniform a=sqrt(5): U(+-1/sqrt(fan_in)) for
    weight and bias), which sssegmentation's MCIBI head keeps."""
    for m in layer.sublayers(include_self=True):
        if isinstance(m, nn.Conv2D):
            fan_in = int(np.prod(m.weight.shape[1:]))
            bound = 1.0 / math.sqrt(fan_in)
            nn.initializer.Uniform(-bound, bound)(m.weight)
            if m.bias is not None:
                nn.initializer.Uniform(-bound, bound)(m.bias)


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
        self.global_branch = nn.Sequential(nn.AdaptiveAvgPool2D(1), *_cba(in_channels, out_channels, 1, act=act))
        self.bottleneck = conv_bn_act(out_channels * (len(dilations) + 1), out_channels, 3, padding=1, act=act)

    def forward(self, x):
        outs = [branch(x) for branch in self.parallel_branches]
        outs.append(resize(self.global_branch(x), input_hw(x), align_corners=self.align_corners))
        return self.bottleneck(paddle.concat(outs, axis=1))


def _project(in_channels, out_channels, num_convs, act):
    """sssegmentation ``SelfAttentionBlock.buildproject`` with norm: one conv-BN-act block, or a
    Sequential of them when ``num_convs > 1``."""
    convs = [conv_bn_act(in_channels if i == 0 else out_channels, out_channels, 1, act=act) for i in range(num_convs)]
    return convs[0] if num_convs == 1 else nn.Sequential(*convs)


class SelfAttentionBlock(nn.Layer):
    """Scaled dot-product attention from query pixels to key pixels (sssegmentation
    ``base/selfattention.py`` with two key/query convs, one value/out conv, all normed,
    matmul_norm and out projection: the configuration MCIBI uses)."""

    def __init__(self, in_channels, transform_channels, out_channels, key_query_num_convs=2, act='relu'):
        super().__init__()
        self.transform_channels = transform_channels
        self.key_project = _project(in_channels, transform_channels, key_query_num_convs, act)
        self.query_project = _project(in_channels, transform_channels, key_query_num_convs, act)
        self.value_project = _project(in_channels, transform_channels, 1, act)
        self.out_project = _project(transform_channels, out_channels, 1, act)

    def forward(self, query_feats, key_feats):
        query = self.query_project(query_feats)
        shape = paddle.shape(query)
        q = query.flatten(2).transpose([0, 2, 1])                 # [B, HWq, T]
        k = self.key_project(key_feats).flatten(2)                 # [B, T, HWk]
        v = self.value_project(key_feats).flatten(2).transpose([0, 2, 1])  # [B, HWk, T]
        sim = F.softmax(paddle.matmul(q, k) * (self.transform_channels ** -0.5), axis=-1)
        context = paddle.matmul(sim, v).transpose([0, 2, 1])      # [B, T, HWq]
        return self.out_project(paddle.reshape(context, shape))


class FeaturesMemory(nn.Layer):
    """The dataset-level memory and its read-out (sssegmentation ``mcibi/memory.py``).

    ``memory``: buffer ``[num_classes, num_feats_per_cls, feats_channels]``, zeros until the
    first update (or filled by ``tools/init_memory.py``).
    """

    def __init__(self, num_classes, feats_channels, transform_channels, out_channels, num_feats_per_cls=1,
                 use_context_within_image=True, use_hard_aggregate=False, act='relu'):
        super().__init__()
        if num_feats_per_cls < 1:
            raise ConfigError(f'model.num_feats_per_cls: expected >= 1, got {num_feats_per_cls}')
        self.num_classes = num_classes
        self.feats_channels = feats_channels
        self.num_feats_per_cls = num_feats_per_cls
        self.use_context_within_image = use_context_within_image
        self.use_hard_aggregate = use_hard_aggregate
        self.register_buffer('memory', paddle.zeros([num_classes, num_feats_per_cls, feats_channels]),
                             persistable=True)
        if num_feats_per_cls > 1:
            self.self_attentions = nn.LayerList([
                SelfAttentionBlock(feats_channels, transform_channels, feats_channels, act=act)
                for _ in range(num_feats_per_cls)])
            self.fuse_memory_conv = conv_bn_act(feats_channels * num_feats_per_cls, feats_channels, 1, act=act)
        else:
            self.self_attention = SelfAttentionBlock(feats_channels, transform_channels, feats_channels, act=act)
        self.bottleneck = conv_bn_act(feats_channels * 2, out_channels, 3, padding=1, act=act)
        if use_context_within_image:
            self.self_attention_ms = SelfAttentionBlock(feats_channels, transform_channels, feats_channels, act=act)
            self.bottleneck_ms = conv_bn_act(feats_channels * 2, out_channels, 3, padding=1, act=act)

    def class_weights(self, preds):
        """[B, K, H*W]: softmax class probabilities (or one-hot argmax with hard aggregation)."""
        if self.use_hard_aggregate:
            onehot = F.one_hot(paddle.argmax(preds, axis=1), self.num_classes)  # [B, H, W, K]
            return onehot.transpose([0, 3, 1, 2]).flatten(2)
        return F.softmax(preds, axis=1).flatten(2)

    def forward(self, feats, preds, feats_ms=None):
        weights = self.class_weights(preds)
        memory = self.memory.detach()
        shape = paddle.shape(feats)
        # each pixel reads sum_k p_k * memory[k]: [C, K] x [B, K, HW] -> [B, C, HW]
        selected = [paddle.reshape(paddle.matmul(memory[:, j, :].transpose([1, 0]), weights), shape)
                    for j in range(self.num_feats_per_cls)]
        if self.num_feats_per_cls > 1:
            related = [att(feats, s) for att, s in zip(self.self_attentions, selected)]
            selected_memory = self.fuse_memory_conv(paddle.concat(related, axis=1))
        else:
            selected_memory = self.self_attention(feats, selected[0])
        out = self.bottleneck(paddle.concat([feats, selected_memory], axis=1))
        if self.use_context_within_image:
            feats_ms = self.self_attention_ms(feats, feats_ms)
            out = self.bottleneck_ms(paddle.concat([feats_ms, out], axis=1))
        return out

    @paddle.no_grad()
    def update(self, features, labels, momentum, ignore_index=255, strategy='cosine_similarity',
               align_corners=False):
        """One memory update from a batch (sssegmentation ``FeaturesMemory.update``).

        ``features``: [N, C, h, w] bottleneck features of the batch; ``labels``: [N, H, W].
        The features are resized to the labels one image at a time and reduced into per-class
        sums, so the result equals the reference's whole-batch computation without holding the
        batch's full-resolution features at once.
        """
        K, Fm, C = self.num_classes, self.num_feats_per_cls, self.feats_channels
        dtype = 'float64' if self.memory.dtype == paddle.float64 else 'float32'  # float64: parity runs
        memory = self.memory.astype(dtype)
        features = features.astype(dtype)
        labels = labels.astype('int64')
        if labels.ndim == 4:
            labels = labels.squeeze(1)
        size = labels.shape[-2:]
        sum_feats = paddle.zeros([K, C], dtype)
        counts = paddle.zeros([K], dtype)
        w_feats = paddle.zeros([K * Fm, C], dtype)   # sum (1 - cos) * f per (class, slot)
        w_sums = paddle.zeros([K * Fm], dtype)       # sum (1 - cos) per (class, slot)
        slot_counts = paddle.zeros([K * Fm], dtype)
        mem_unit = F.normalize(memory, axis=-1)          # for slot assignment (F > 1)
        mem_norm = paddle.linalg.norm(memory, axis=-1)   # [K, F]
        for i in range(features.shape[0]):
            f = resize(features[i:i + 1], size, align_corners=align_corners).flatten(2)[0].transpose([1, 0])
            lab = labels[i].flatten()
            keep = paddle.nonzero((lab != ignore_index) & (lab >= 0) & (lab < K)).flatten()
            if keep.shape[0] == 0:
                continue
            f = paddle.gather(f, keep)                   # [P, C]
            lab = paddle.gather(lab, keep)               # [P]
            ones = paddle.ones([lab.shape[0]], dtype)
            sum_feats = paddle.index_add(sum_feats, lab, 0, f)
            counts = paddle.index_add(counts, lab, 0, ones)
            if strategy == 'mean':
                continue
            rows = paddle.gather(memory, lab)            # [P, F, C]
            if Fm > 1:
                relation = paddle.matmul(paddle.gather(mem_unit, lab), F.normalize(f, axis=-1).unsqueeze(-1))
                slot = paddle.argmax(relation.squeeze(-1), axis=1)          # [P]
            else:
                slot = paddle.zeros_like(lab)
            m = paddle.take_along_axis(rows, slot.reshape([-1, 1, 1]).expand([-1, 1, C]), axis=1).squeeze(1)
            m_norm = paddle.take_along_axis(paddle.gather(mem_norm, lab), slot.reshape([-1, 1]), axis=1).squeeze(1)
            # torch.nn.functional.cosine_similarity (eps 1e-8)
            cos = (f * m).sum(-1) / paddle.clip(paddle.linalg.norm(f, axis=-1) * m_norm, min=1e-8)
            w = 1.0 - cos
            flat = lab * Fm + slot
            w_feats = paddle.index_add(w_feats, flat, 0, f * w.unsqueeze(-1))
            w_sums = paddle.index_add(w_sums, flat, 0, w)
            slot_counts = paddle.index_add(slot_counts, flat, 0, ones)
        new = self._fold(memory.numpy(), sum_feats.numpy(), counts.numpy(), w_feats.numpy().reshape(K, Fm, C),
                         w_sums.numpy().reshape(K, Fm), slot_counts.numpy().reshape(K, Fm), momentum, strategy)
        new = paddle.to_tensor(new, dtype=dtype)
        if paddle.distributed.get_world_size() > 1:
            paddle.distributed.all_reduce(new)
            new = new / paddle.distributed.get_world_size()
        self.memory.set_value(new)

    @staticmethod
    def _fold(memory, sum_feats, counts, w_feats, w_sums, slot_counts, momentum, strategy):
        """Apply the per-class updates (numpy; [K, F, C] memory)."""
        new = memory.copy()
        for c in np.nonzero(counts > 0)[0]:
            empty = np.nonzero((memory[c] == 0).all(-1))[0]
            if len(empty):                       # first time: the class mean fills an empty slot
                new[c, empty[0]] = sum_feats[c] / counts[c]
                continue
            if strategy == 'mean':
                new[c, 0] = (1 - momentum) * memory[c, 0] + momentum * sum_feats[c] / counts[c]
                continue
            for j in range(memory.shape[1]):
                if slot_counts[c, j] == 0:
                    # the reference sums an empty selection (0): the slot decays by (1 - momentum)
                    target = np.zeros_like(memory[c, j])
                elif w_sums[c, j] > 0:
                    target = w_feats[c, j] / w_sums[c, j]
                else:                            # every feature parallel to the memory: plain mean
                    target = memory[c, j]
                new[c, j] = (1 - momentum) * memory[c, j] + momentum * target
        return new


class AuxiliaryDecoder(nn.Sequential):
    """sssegmentation's ``DefaultAuxiliaryDecoder`` (``segmentors/base/auxiliary.py``):
    ``num_convs`` x (3x3 conv-BN-act, then a nearest ``upsample`` by that scale if given),
    Dropout2d, 1x1 classifier. One conv without upsampling (the ResNet rows) gives indices
    0..4; two convs with upsampling (the ViT-L rows) 0..9, the second conv at 4x the feature
    resolution, as in the reference."""

    def __init__(self, in_channels, channels, num_classes, dropout=0.1, act='relu', num_convs=1, upsample=None):
        layers = []
        for i in range(num_convs):
            layers += _cba(in_channels if i == 0 else channels, channels, 3, padding=1, act=act)
            if upsample:
                layers.append(nn.Upsample(scale_factor=upsample, mode='nearest'))
        layers += [nn.Dropout2D(dropout), nn.Conv2D(channels if num_convs else in_channels, num_classes, 1)]
        super().__init__(*layers)


def _decoder(channels, num_classes, dropout, act):
    return nn.Sequential(*_cba(channels, channels, 1, act=act), nn.Dropout2D(dropout),
                         nn.Conv2D(channels, num_classes, 1))


@MODELS.register()
class MCIBI(nn.Layer):
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
        pretrained: whole-model checkpoint in our names.
    """

    def __init__(self, num_classes, backbone, in_channels=2048, feats_channels=512, transform_channels=256,
                 out_channels=512, num_feats_per_cls=1, use_hard_aggregate=False, aspp_dilations=(1, 12, 24, 36),
                 dropout=0.1, aux_in_channels=None, aux_channels=512, aux_dropout=0.1, aux_num_convs=1,
                 aux_upsample=None, act='relu',
                 update_strategy='cosine_similarity', memory_base_momentum=0.9, memory_base_lr=0.01,
                 memory_adjust_by_lr=True, ignore_index=255, use_memory_loss=False, memory_loss_start_iter=0,
                 memory_init=None, align_corners=False, pretrained=None):
        super().__init__()
        if not isinstance(backbone, nn.Layer) or not hasattr(backbone, 'feat_channels'):
            raise ConfigError(f'model.backbone: expected a backbone type dict (e.g. ResNetV1c), got {backbone!r}')
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
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.update_strategy = update_strategy
        self.memory_base_momentum = memory_base_momentum
        self.memory_base_lr = memory_base_lr
        self.memory_adjust_by_lr = memory_adjust_by_lr
        self.ignore_index = ignore_index
        self.use_memory_loss = use_memory_loss
        self.memory_loss_start_iter = memory_loss_start_iter
        self.backbone = backbone
        aux_in = self._check_aux(backbone, aux_in_channels, aux_channels, aux_num_convs, aux_upsample)
        aux_names = ['aux'] if len(aux_in) == 1 else [f'aux{i + 1}' for i in range(len(aux_in))]
        self.output_names = ['stage2', 'stage1'] + aux_names + (['memory'] if use_memory_loss else [])
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
        decoders = [AuxiliaryDecoder(c, aux_channels, num_classes, aux_dropout, act, aux_num_convs, aux_upsample)
                    for c in aux_in]
        self.auxiliary_decoder = None
        if len(decoders) == 1:
            self.auxiliary_decoder = decoders[0]
        elif decoders:
            self.auxiliary_decoder = nn.LayerList(decoders)
        head += decoders
        for layer in head + [self.bottleneck, self.memory_module, self.decoder_stage1, self.decoder_stage2]:
            torch_default_conv_init(layer)
        self._cached_features = None
        self._iteration = 0
        if memory_init:
            self.load_memory(memory_init)
        self.pretrained = pretrained
        if pretrained:
            load_pretrained(self, pretrained, strict=True)

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
        from zoo.utils.errors import CheckpointError
        try:
            arr = np.load(path)
        except (OSError, ValueError) as e:
            raise CheckpointError(f'model.memory_init: cannot read {path!r} ({e})') from None
        want = tuple(self.memory_module.memory.shape)
        if arr.shape != want:
            raise CheckpointError(f'model.memory_init: {path!r} has shape {list(arr.shape)}, expected {list(want)}')
        self.memory_module.memory.set_value(arr.astype('float32'))

    def decode(self, top):
        """Head on the last backbone feature: (stage-2 logits, stage-1 logits, memory input)."""
        feats_ms = self.context_within_image_module(top) if self.context_within_image_module is not None else None
        memory_input = self.bottleneck(top)
        preds_stage1 = self.decoder_stage1(memory_input)
        memory_output = self.memory_module(memory_input, preds_stage1, feats_ms)
        return self.decoder_stage2(memory_output), preds_stage1, memory_input

    def forward(self, x):
        feats = self.backbone(x)
        preds_stage2, preds_stage1, memory_input = self.decode(feats[-1])
        if not self.training:
            return [resize(preds_stage2, input_hw(x), align_corners=self.align_corners)]
        self._cached_features = memory_input.detach()
        logits = [preds_stage2, preds_stage1]
        if isinstance(self.auxiliary_decoder, nn.LayerList):
            aux_feats = feats[-1 - len(self.auxiliary_decoder):-1]
            logits += [dec(f) for dec, f in zip(self.auxiliary_decoder, aux_feats)]
        elif self.auxiliary_decoder is not None:
            logits.append(self.auxiliary_decoder(feats[-2]))
        outs = [resize(t, input_hw(x), align_corners=self.align_corners) for t in logits]
        if self.use_memory_loss:
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


@LOSSES.register()
class MCIBIMemoryLoss(nn.Layer):
    """Cross-entropy of ``decoder_stage2`` on the memory entries against their own classes
    (sssegmentation ``MCIBI.calculatememoryloss``); takes MCIBI's 4th training output and
    ignores the pixel labels. An empty input (before the start iteration) gives 0."""

    def forward(self, logits, label=None):
        n, k = logits.shape[0], logits.shape[1]
        dtype = 'float64' if logits.dtype == paddle.float64 else 'float32'
        if n == 0:
            return paddle.zeros([], dtype)
        per_class = n // k
        target = paddle.arange(k, dtype='int64').unsqueeze(1).expand([k, per_class]).reshape([-1, 1])
        return F.cross_entropy(logits.reshape([n, k]).astype(dtype), target, reduction='mean')


# -- importer -------------------------------------------------------------------------

def sssegmentation_key(key, vit_backbone=False):
    """One sssegmentation MCIBI state-dict key -> (our key, whether the value is a torch
    linear weight to transpose), after the BN statistics renames.

    ``backbone_net.`` -> ``backbone.`` (its ResNet uses mmseg/torchvision names: ``stem.<i>``,
    ``layer<n>.<j>``, ``downsample.<i>``; its ViT our names); the segmentor-level ViT
    ``norm_layers.<i>`` (head ``norm_cfg``) -> ``backbone.norm_layers.<i>`` (our
    ``VisionTransformer(out_norm=True)`` owns them); HRNet's ``downsample_backbone.`` ->
    ``backbone.downsample_backbone.``; a DataParallel ``module.`` prefix is dropped."""
    if key.startswith('module.'):
        key = key[len('module.'):]
    if key.startswith('backbone_net.'):
        key = 'backbone.' + key[len('backbone_net.'):]
        return key, vit_backbone and is_linear_weight(key)
    if key.startswith(('downsample_backbone.', 'norm_layers.')):
        return 'backbone.' + key, False
    return key, False


@register_importer('MCIBI', 'sssegmentation')
def import_sssegmentation(sd, model):
    """sssegmentation MCIBI checkpoints (``{'model': state_dict}``; the tree is the same from
    the 2021 ``memorynet`` that trained the published weights to 1.7.0), key by key through
    :func:`sssegmentation_key`; BN statistics renamed; ViT linear weights transposed to
    Paddle's [in, out]."""
    vit = isinstance(model.backbone, VisionTransformer)
    out = {}
    for k, v in torch_to_paddle_names(sd).items():
        new, transpose = sssegmentation_key(k, vit)
        out[new] = np.ascontiguousarray(np.asarray(v.numpy() if hasattr(v, 'numpy') else v).T) if transpose else v
    return out
