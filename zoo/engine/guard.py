"""Finite or nothing: catch a diverging run early and never write a non-finite checkpoint.

A run can diverge while its logged loss stays finite (BatchNorm renormalizes exploding
activations; measured: ``--learning_rate 1000`` on the demo config wrote checkpoints with 98 of
236 tensors NaN/inf while the loss looked fine). So the trainer checks three things:

* **every iteration**: the loss (already computed for logging) is finite;
* **every log_iters**: the global gradient norm is finite (one reduction over all gradients,
  after they were all-reduced across ranks; skipped under fp16 loss scaling, where inf
  gradients are expected and the scaler skips those steps);
* **before every save** (``iter_N`` and ``best_model``): every floating-point tensor of the
  model and the optimizer state is finite.

With several ranks each decision is all-reduced, so every rank stops at the same iteration
(a rank stopping alone would leave the others waiting in the next all-reduce). The run then
stops with one line naming the iteration and the newest checkpoint whose files really are
finite (re-read from disk, so it also covers checkpoints an earlier run wrote).
"""
import os

import paddle
import paddle.distributed as dist

from ..utils.checkpoint import load_file, nonfinite_keys
from ..utils.errors import CheckpointError, ZooError


class TrainingDiverged(ZooError):
    """The loss, the gradients or the weights became NaN or infinite."""


def any_rank(flag, world_size):
    """True if ``flag`` is true on any rank (an all-reduce when several ranks run)."""
    if world_size <= 1:
        return bool(flag)
    t = paddle.to_tensor([1 if flag else 0], dtype='int32')
    dist.all_reduce(t)
    return int(t.item()) > 0


def global_grad_norm(parameters):
    """sqrt(sum of squared gradients), as a Python float (inf/nan when a gradient is)."""
    sums = [paddle.sum(paddle.square(p.grad.astype('float32'))) for p in parameters if p.grad is not None]
    if not sums:
        return 0.0
    return float(paddle.sqrt(paddle.add_n(sums).astype('float64')))


def is_finite_checkpoint(path):
    """Whether ``path/model.pdparams`` (and ``model.pdopt`` if present) load and are finite."""
    try:
        for name in ('model.pdparams', 'model.pdopt'):
            f = os.path.join(path, name)
            if name == 'model.pdparams' or os.path.exists(f):
                if nonfinite_keys(load_file(f, return_numpy=True)):
                    return False
    except CheckpointError:
        return False
    return True


def last_finite_checkpoint(candidates):
    """The newest of ``candidates`` (oldest first) that is a finite, loadable checkpoint."""
    for path in reversed(list(candidates)):
        if os.path.isdir(path) and is_finite_checkpoint(path):
            return path
    return None


class DivergenceGuard:
    """The trainer's checks; ``checkpoints()`` returns the run's ``iter_N`` folders, oldest first."""

    def __init__(self, world_size, checkpoints):
        self.world_size = world_size
        self.checkpoints = checkpoints

    def _stop(self, what, iteration):
        last = last_finite_checkpoint(self.checkpoints())
        where = f'the last finite checkpoint is {last}' if last else 'no finite checkpoint was saved'
        raise TrainingDiverged(f'{what} at iteration {iteration}: training stopped, nothing saved; {where} '
                               '(lower the learning rate or check the data)')

    def check_loss(self, loss_value, iteration):
        bad = loss_value != loss_value or loss_value in (float('inf'), float('-inf'))
        if any_rank(bad, self.world_size):
            self._stop(f'loss is {loss_value}' if bad else 'loss is NaN/inf on another rank', iteration)

    def check_gradients(self, parameters, iteration):
        # after backward the gradients are all-reduced (DataParallel): every rank sees the same
        # norm and stops at the same iteration without another collective
        norm = global_grad_norm(parameters)
        if norm != norm or norm == float('inf'):
            self._stop(f'gradient norm is {norm}', iteration)
        return norm

    def check_state(self, named_states, iteration, collective=True):
        """``named_states``: ``{'model': state_dict, 'optimizer': state_dict}``."""
        bad = []
        for what, state in named_states.items():
            bad += [f'{what} {k}' for k in nonfinite_keys(state)]
        if any_rank(bool(bad), self.world_size if collective else 1):
            detail = f'{len(bad)} tensors hold NaN/inf (e.g. {", ".join(bad[:3])})' if bad else \
                'the weights hold NaN/inf on another rank'
            self._stop(detail, iteration)
