"""Reference-side helpers of the training-step parity (torch environments; numpy + torch only).

Used by ``train_step_mmseg.py``, ``train_step_sssegmentation.py`` and ``train_step_regseg.py``:
dropout masks from the shared protocol, a shadow of every BatchNorm's running variance kept with
the biased batch variance (Paddle's rule; PyTorch keeps the unbiased one), float64 weights from
:func:`train_step_common.reference_weights`, and the output folder layout that
``train_step_manifest.py`` reads.
"""
import numpy as np
import torch

from train_step_common import DropoutMasks, reference_weights, save_run

MASKS = DropoutMasks()


def patch_dropout():
    """Every ``nn.Dropout`` / ``nn.Dropout2d`` multiplies by the protocol's mask in training."""
    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        m = MASKS.mask(x.shape, self.p, channelwise=isinstance(self, torch.nn.Dropout2d))
        return x * torch.from_numpy(m).to(x.dtype)

    torch.nn.Dropout.forward = forward
    torch.nn.Dropout2d.forward = forward


class BiasedVarianceShadow:
    """For every BatchNorm, the running variance it would hold with the biased batch variance
    (what Paddle's BatchNorm keeps), updated with the module's own momentum."""

    def __init__(self, model):
        self.shadow = {}
        self.handles = []
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                self.shadow[name] = m.running_var.detach().clone()
                self.handles.append(m.register_forward_pre_hook(self._hook(name)))

    def _hook(self, name):
        def hook(module, inputs):
            if not module.training:
                return
            x = inputs[0].detach()
            dims = [0] + list(range(2, x.dim()))
            var = x.var(dim=dims, unbiased=False)
            mom = module.momentum
            self.shadow[name] = (1 - mom) * self.shadow[name] + mom * var
        return hook

    def arrays(self):
        return {f'{k}.running_var': v.numpy().astype(np.float64) for k, v in self.shadow.items()}


def load_weights(model, seed=0):
    """Fill every parameter and buffer with the protocol's float64 weights (reference names)."""
    sd = model.state_dict()
    gen = reference_weights({k: tuple(v.shape) for k, v in sd.items()}, seed)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in gen.items()}, strict=True)
    return sorted(gen)


# reference runs: the first is the one our side must match; each other one differs from it in one
# named way, and our gap to it is that difference's measured effect
VARIANTS = {
    'paddle_kernel': 'the reference with the float32 scalars of Paddle\'s kernels (round_hyperparameters)',
    'exact': 'SGD momentum / weight decay and BatchNorm momentum / epsilon as the config\'s doubles; Paddle\'s '
             'momentum and batch_norm kernels hold them as float32 attributes (PyTorch applies float32 values in '
             'float32 training too)',
}


def round_hyperparameters(optimizer, model, variant):
    """``paddle_kernel``: the scalars Paddle's kernels hold as float32 attributes, rounded so:
    SGD momentum and weight decay (the ``momentum`` kernel's ``mu`` / ``regularization_coeff``),
    BatchNorm epsilon and momentum (Paddle keeps ``m = 1 - torch momentum`` as float32, so the
    torch momentum becomes ``1 - float32(1 - momentum)``). In float32 training PyTorch applies
    float32 values too. ``exact``: the config's doubles."""
    if variant == 'exact':
        return
    for group in optimizer.param_groups:
        for key in ('momentum', 'weight_decay'):
            if key in group:
                group[key] = float(np.float32(group[key]))
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eps = float(np.float32(m.eps))
            if m.momentum is not None:
                m.momentum = 1.0 - float(np.float32(1.0 - m.momentum))


def momentum_buffers(model, optimizer):
    """``{parameter name: SGD momentum buffer}`` (zeros for parameters the optimizer never updated)."""
    out = {}
    for name, p in model.named_parameters():
        st = optimizer.state.get(p, {})
        buf = st.get('momentum_buffer')
        out[name] = (buf.detach().numpy() if buf is not None else np.zeros(tuple(p.shape))).astype(np.float64)
    return out


def save(family, variant, *, state, momentum, biased_var, record, schedule):
    """:func:`train_step_common.save_run` with this process's dropout calls and torch version."""
    record = dict(record, variant_note=record.get('variant_note', VARIANTS.get(variant)))
    save_run(family, variant, state=state, momentum=momentum, biased_var=biased_var, record=record,
             schedule=schedule, dropout_calls=MASKS.log, versions={'torch': torch.__version__})
    MASKS.log = []
