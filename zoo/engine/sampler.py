"""The training batch sampler: epoch-based shuffling, sharded across ranks, resumable.

It yields the batches of iterations ``start_iter .. total_iters`` directly (crossing epochs),
so a resumed run sees exactly the batches the uninterrupted run would have seen. Each index
is encoded as ``epoch * len(dataset) + i``; ``Dataset.__getitem__`` decodes it and seeds the
sample's augmentation from (seed, epoch, i).

Sharding follows ``paddle.io.DistributedBatchSampler``: each epoch's permutation is padded to
a multiple of the world size and rank r takes every world_size-th index from r. Incomplete
last batches are dropped (as mmseg's InfiniteSampler-based training does).
"""
import numpy as np


class TrainBatchSampler:
    def __init__(self, dataset_len, batch_size, total_iters, start_iter=0, shuffle=True, seed=0, rank=0,
                 world_size=1):
        if dataset_len <= 0:
            raise ValueError('empty dataset')
        self.n = dataset_len
        self.batch_size = batch_size
        self.total_iters = total_iters
        self.start_iter = start_iter
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        per_rank = -(-dataset_len // world_size)
        self.iters_per_epoch = per_rank // batch_size
        if self.iters_per_epoch == 0:
            raise ValueError(f'batch size {batch_size} x {world_size} rank(s) is larger than the dataset '
                             f'({dataset_len} samples)')

    def epoch_indices(self, epoch):
        order = (np.random.RandomState(self.seed + epoch).permutation(self.n) if self.shuffle
                 else np.arange(self.n))
        total = -(-self.n // self.world_size) * self.world_size
        order = np.concatenate([order, order[: total - self.n]]) if total > self.n else order
        mine = order[self.rank::self.world_size]
        return mine[: self.iters_per_epoch * self.batch_size] + epoch * self.n

    def __iter__(self):
        it = self.start_iter
        while it < self.total_iters:
            epoch, b = divmod(it, self.iters_per_epoch)
            idx = self.epoch_indices(epoch)
            while b < self.iters_per_epoch and it < self.total_iters:
                yield idx[b * self.batch_size:(b + 1) * self.batch_size].tolist()
                b += 1
                it += 1

    def __len__(self):
        return max(self.total_iters - self.start_iter, 0)
