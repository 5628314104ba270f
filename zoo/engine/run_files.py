"""What a training run keeps beside its checkpoints, and the state its ranks must share.

* ``save_dir/train.log``: every line the console gets (appended on resume);
* ``save_dir/config.yml``: the resolved config, each key annotated with the file that set it;
* :func:`broadcast_buffers`: before each evaluation and checkpoint of a multi-process run, every
  rank takes rank 0's non-trained state (BatchNorm running statistics).

Why the last one: gradients are all-reduced, so the trained weights are equal on every rank,
but without SyncBN (GPU-only in Paddle) each CPU rank's BatchNorm running statistics follow its
own batches. The evaluation splits the images over the ranks, so each rank judged its share with
its own statistics, while the checkpoint and ``best_model`` hold rank 0's: measured on the demo
(2 ranks, 150 iterations), training-time evaluation 0.6388, ``val.py`` on the saved weights
0.6356, which is exactly rank 0's statistics on the even images plus rank 1's on the odd ones.
PyTorch's DistributedDataParallel broadcasts rank 0's buffers at every forward
(``broadcast_buffers=True``); broadcasting them before an evaluation and a save gives the same
agreement at no cost to the training step, and a checkpoint that is the state of every rank.
"""
import os

import paddle
import paddle.distributed as dist

from ..utils.atomic import atomic_write_text
from ..utils.config import dump_with_origins
from ..utils.logger import log_to_file, logger


def open_run_files(save_dir, cfg, rank=0):
    """Rank 0: start ``train.log`` and write ``config.yml``; returns the log handler (or None)."""
    if rank != 0:
        return None
    os.makedirs(save_dir, exist_ok=True)
    handler = log_to_file(os.path.join(save_dir, 'train.log'))
    atomic_write_text(os.path.join(save_dir, 'config.yml'), dump_with_origins(cfg))
    logger.info(f'logging to {os.path.join(save_dir, "train.log")}; resolved config in '
                f'{os.path.join(save_dir, "config.yml")}')
    return handler


def non_trained_state(model):
    """State-dict entries that no optimizer updates (BatchNorm running mean/variance, buffers)."""
    trained = {k for k, p in model.named_parameters() if not p.stop_gradient}
    return [(k, v) for k, v in model.state_dict().items() if k not in trained]


def broadcast_buffers(model, src=0):
    """Give every rank rank ``src``'s non-trained state (no-op in a single process)."""
    if dist.get_world_size() <= 1:
        return
    with paddle.no_grad():
        for _, v in non_trained_state(model):
            dist.broadcast(v, src=src)
