"""MCIBI's dataset-level memory and its read-out (sssegmentation 1.7.0
``segmentors/mcibi/memory.py`` and ``base/selfattention.py``; Jin et al., ICCV 2021, Sec. 3.2-3.3).

The memory ``[num_classes, feats_per_class, channels]`` is read by soft aggregation with the
stage-1 class probabilities, related to the pixel features by self-attention and fused with
them (``bottleneck``) and with the ASPP context (``self_attention_ms``, ``bottleneck_ms``).
:meth:`FeaturesMemory.update` is the training update (paper Eq. 5-6): per class present in
the batch, the pixel features labelled with it are averaged with weights
``1 - cos(feature, memory)`` and folded in with a momentum; a class seen for the first time
is initialised with its mean feature; ranks average their memories in distributed training.
"""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from zoo.models.layers import conv_bn_act, resize
from zoo.utils.errors import ConfigError


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
        self.memory.set_value(new.astype(self.memory.dtype))  # fp16/bf16 under --amp_level O2

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
