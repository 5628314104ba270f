"""Initialise MCIBI's memory from a trained network by clustering (sssegmentation's
``segmentors/mcibi/initmemory.py``; used by ``tools/init_memory.py``).

For every training image the features are resized to the label, averaged per class present,
and the per-image class means of each class are clustered into ``num_feats_per_cls`` centres
(features scaled per channel by their standard deviation, as the reference's
``StandardScaler(with_mean=False)``, then k-means with cosine similarity). Two deliberate
differences from the reference script: the features are the ones the memory stores (the
model's ``bottleneck`` output, ``feats_channels`` wide) rather than the raw last backbone stage
(2048 channels, which does not fit a 512-channel memory), and the centres are mapped back to
feature units (the reference keeps them in scaled units). Classes never seen stay zero: the
training update fills them with their mean at first sight.
"""
import numpy as np
import paddle

from .layers import resize


@paddle.no_grad()
def class_mean_features(model, dataset, max_images=None, ignore_index=255):
    """{class: [per-image mean feature, ...]} over the first ``max_images`` images."""
    model.eval()
    n = len(dataset) if max_images is None else min(len(dataset), int(max_images))
    means = {}
    for i in range(n):
        img, label = dataset[i]
        x = paddle.to_tensor(np.asarray(img)[None], dtype='float32')
        feats = model.bottleneck(model.backbone(x)[-1])
        label = np.asarray(label)
        feats = resize(feats, label.shape[-2:], align_corners=model.align_corners)[0]
        f = feats.numpy().reshape(feats.shape[0], -1).T          # [H*W, C]
        lab = label.reshape(-1)
        for c in np.unique(lab):
            if c == ignore_index or c < 0 or c >= model.num_classes:
                continue
            means.setdefault(int(c), []).append(f[lab == c].mean(0))
    return means


def cosine_kmeans(data, k, iters=50, seed=0):
    """k centres of ``data`` [N, C] by Lloyd's algorithm with cosine similarity (spherical
    k-means, k-means++ seeding); centres are the plain means of their members."""
    data = np.asarray(data, 'float64')
    if k == 1 or len(data) <= k:
        centres = [data.mean(0)] if k == 1 else list(data) + [data.mean(0)] * (k - len(data))
        return np.stack(centres)
    rng = np.random.RandomState(seed)
    unit = data / np.maximum(np.linalg.norm(data, axis=1, keepdims=True), 1e-12)
    idx = [rng.randint(len(data))]
    for _ in range(1, k):
        dist = 1.0 - (unit @ unit[idx].T).max(1)
        p = np.maximum(dist, 0)
        idx.append(rng.choice(len(data), p=p / p.sum()) if p.sum() > 0 else rng.randint(len(data)))
    centres = data[idx].copy()
    for _ in range(iters):
        cu = centres / np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
        assign = (unit @ cu.T).argmax(1)
        new = np.stack([data[assign == j].mean(0) if (assign == j).any() else centres[j] for j in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return centres


def init_memory(model, dataset, num_feats_per_cls=1, max_images=None, ignore_index=255, seed=0):
    """[num_classes, num_feats_per_cls, feats_channels] float32 memory for ``model``."""
    means = class_mean_features(model, dataset, max_images, ignore_index)
    channels = model.memory_module.feats_channels
    memory = np.zeros((model.num_classes, num_feats_per_cls, channels), 'float32')
    for c, rows in means.items():
        rows = np.stack(rows)
        scale = rows.std(0) if len(rows) > 1 else np.ones(channels)
        scale = np.where(scale > 0, scale, 1.0)
        memory[c] = cosine_kmeans(rows / scale, num_feats_per_cls, seed=seed) * scale
    return memory
