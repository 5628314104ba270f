"""Exponential moving average of a model's weights (``tools/train.py --use_ema``).

After every optimizer step ``ema = decay * ema + (1 - decay) * weights`` for every
floating-point entry of the state dict: parameters and BatchNorm running statistics (their
average follows the averaged weights, as timm's ``ModelEmaV2`` and PaddleSeg's
``update_ema_model`` do); integer buffers are copied. The average starts from the weights the
model has when training starts (or the checkpoint's average when resuming).

Evaluation swaps the averaged weights in (:meth:`ModelEMA.swapped_in`) instead of keeping a
second model, so the EMA costs one copy of the state dict.
"""
import contextlib

import paddle

from ..utils.errors import ConfigError


class ModelEMA:
    """EMA of ``model``'s state dict with ``decay`` in [0, 1)."""

    def __init__(self, model, decay=0.999):
        decay = float(decay)
        if not 0.0 <= decay < 1.0:
            raise ConfigError(f'--ema_decay: expected a number in [0, 1), got {decay}')
        self.decay = decay
        self.updates = 0
        with paddle.no_grad():
            # float32 averages whatever the model's dtype: under --amp_level O2 the weights are
            # fp16/bf16, where a (1 - decay) step is below half a unit and the average would not move
            self.shadow = {k: (v.detach().astype('float32') if v.dtype in (paddle.float16, paddle.bfloat16)
                               else v.detach().clone())
                           for k, v in model.state_dict().items()}

    def update(self, model):
        d = self.decay
        with paddle.no_grad():
            for k, v in model.state_dict().items():
                s = self.shadow[k]
                if paddle.is_floating_point(s):
                    s.set_value(s * d + v.astype(s.dtype) * (1.0 - d))
                else:
                    s.set_value(v)
        self.updates += 1

    def state_dict(self):
        return dict(self.shadow)

    def set_state_dict(self, state, source='ema.pdparams'):
        """Load a saved average; every key of the model, with its shape, must be there."""
        from ..utils.errors import CheckpointError
        for k, s in self.shadow.items():
            if k not in state:
                raise CheckpointError(f'{source}: the EMA weights lack {k!r}')
            if list(state[k].shape) != list(s.shape):
                raise CheckpointError(f'{source}: {k} has shape {list(state[k].shape)}, the model {list(s.shape)}')
        with paddle.no_grad():
            for k, s in self.shadow.items():
                v = state[k]
                s.set_value(v.astype(s.dtype) if isinstance(v, paddle.Tensor) else paddle.to_tensor(v, dtype=s.dtype))

    def broadcast_non_trained(self, model, src=0):
        """Give every rank rank ``src``'s average of the non-trained state (BatchNorm statistics
        follow each rank's batches; see ``zoo/engine/run_files.py``)."""
        import paddle.distributed as dist
        if dist.get_world_size() <= 1:
            return
        from .run_files import non_trained_state
        with paddle.no_grad():
            for k, _ in non_trained_state(model):
                dist.broadcast(self.shadow[k], src=src)

    @contextlib.contextmanager
    def swapped_in(self, model):
        """``with ema.swapped_in(model):`` the model holds the averaged weights; restored after."""
        with paddle.no_grad():
            current = model.state_dict()
            backup = {k: v.detach().clone() for k, v in current.items()}
            model.set_state_dict({k: s.astype(current[k].dtype) for k, s in self.shadow.items()})
        try:
            yield model
        finally:
            with paddle.no_grad():
                model.set_state_dict(backup)
