"""Optimizers and the parameter-group rules every optimizer takes.

YAML::

    optimizer:
      type: SGD                     # SGD (momentum) | AdamW | Adam
      momentum: 0.9
      weight_decay: 4.0e-5          # every optimizer (SGD, Adam: L2 added to the gradient; AdamW: decoupled)
      no_weight_decay_norm: false   # BN/LN/GN weights and biases without decay
      no_weight_decay_bias: false   # every bias without decay
      backbone_lr_mult: 1.0         # lr multiplier of parameters under ``backbone.``
      custom_cfg:                   # PaddleSeg-style: name substring -> multipliers
        - {name: pos_embed, lr_mult: 1.0, weight_decay_mult: 0.0}
      grad_clip_norm: null          # clip the global gradient L2 norm

Paddle's ``Momentum`` with ``L2Decay(wd)`` is PyTorch's ``SGD(momentum, weight_decay=wd)``
(dampening 0): both add ``wd * p`` to the gradient (after clipping), keep ``v = mu * v + g``
starting from ``v = g``, and step ``p -= lr * v``; the parity of three steps against mmseg,
sssegmentation, RegSeg and PaddleSeg is in tests/test_train_step_parity.py.
"""
import inspect

import paddle
import paddle.nn as nn
from paddle.regularizer import L2Decay

from ..utils.errors import ConfigError
from ..utils.registry import OPTIMIZERS

NORM_TYPES = (nn.BatchNorm, nn.BatchNorm1D, nn.BatchNorm2D, nn.BatchNorm3D, nn.SyncBatchNorm, nn.LayerNorm,
              nn.GroupNorm, nn.InstanceNorm2D)
CUSTOM_KEYS = ('name', 'lr_mult', 'weight_decay_mult')


@OPTIMIZERS.set_common
class ParamGroupRules:
    """Which parameters train, with which lr multiplier and weight decay (keys every optimizer takes).

    Args:
        weight_decay: the decay coefficient.
        no_weight_decay_norm: no decay on normalization layers' weights and biases.
        no_weight_decay_bias: no decay on any bias.
        backbone_lr_mult: lr multiplier of the parameters under ``backbone.``.
        custom_cfg: ``[{name, lr_mult, weight_decay_mult}]``: every parameter whose name contains
            ``name`` gets the multipliers (multiplied with the ones above).
        grad_clip_norm: clip the global L2 norm of the gradients to this value.
    """

    def __init__(self, weight_decay=0.0, no_weight_decay_norm=False, no_weight_decay_bias=False,
                 backbone_lr_mult=1.0, custom_cfg=None, grad_clip_norm=None):
        for i, item in enumerate(custom_cfg or []):
            if not isinstance(item, dict) or 'name' not in item or set(item) - set(CUSTOM_KEYS):
                raise ConfigError(f'optimizer.custom_cfg.{i}: expected {{name, lr_mult, weight_decay_mult}}, '
                                  f'got {item!r}')
        if grad_clip_norm is not None and grad_clip_norm <= 0:
            raise ConfigError(f'optimizer.grad_clip_norm: must be positive, got {grad_clip_norm}')
        self.weight_decay = float(weight_decay or 0.0)
        self.no_weight_decay_norm = bool(no_weight_decay_norm)
        self.no_weight_decay_bias = bool(no_weight_decay_bias)
        self.backbone_lr_mult = float(backbone_lr_mult)
        self.custom_cfg = list(custom_cfg or [])
        self.grad_clip_norm = grad_clip_norm

    def weight_decay_mults(self):
        """Every weight-decay multiplier the rules can give (1 and those set explicitly)."""
        mults = {1.0}
        if self.no_weight_decay_norm or self.no_weight_decay_bias:
            mults.add(0.0)
        mults.update(float(c.get('weight_decay_mult', 1.0)) for c in self.custom_cfg)
        return mults

    def __call__(self, model):
        """``[(name, parameter, lr_mult, weight_decay_mult)]`` of the trainable parameters."""
        norm_params = set()
        for layer in model.sublayers(include_self=True):
            if isinstance(layer, NORM_TYPES):
                norm_params.update(id(p) for p in layer.parameters(include_sublayers=False))
        out = []
        for name, p in model.named_parameters():
            if p.stop_gradient:
                continue
            lr_mult, wd_mult = 1.0, 1.0
            bare = name[len('_layers.'):] if name.startswith('_layers.') else name  # DataParallel prefix
            if bare.startswith('backbone.'):
                lr_mult *= self.backbone_lr_mult
            if self.no_weight_decay_norm and id(p) in norm_params:
                wd_mult = 0.0
            if self.no_weight_decay_bias and bare.endswith('bias'):
                wd_mult = 0.0
            for c in self.custom_cfg:
                if c['name'] in bare:
                    lr_mult *= float(c.get('lr_mult', 1.0))
                    wd_mult *= float(c.get('weight_decay_mult', 1.0))
            out.append((name, p, lr_mult, wd_mult))
        return out

    def grad_clip(self):
        return nn.ClipGradByGlobalNorm(float(self.grad_clip_norm)) if self.grad_clip_norm else None


def param_groups(model, optimizer_node):
    """The groups an ``optimizer:`` config section gives ``model`` (its own keys ignored)."""
    names = set(inspect.signature(ParamGroupRules).parameters)
    return ParamGroupRules(**{k: v for k, v in optimizer_node.items() if k in names})(model)


def _coupled_decay_params(model, rules):
    """Parameters with their lr multiplier set, and their own ``L2Decay`` where the rules give
    a multiplier other than 1 (a parameter's regularizer overrides the optimizer's)."""
    params = []
    for _, p, lr_mult, wd_mult in rules(model):
        p.optimize_attr['learning_rate'] = lr_mult
        p.regularizer = L2Decay(rules.weight_decay * wd_mult) if wd_mult != 1.0 else None
        params.append(p)
    return params


class Optimizer:
    """A registered optimizer: built from its own keys, then ``build(model, lr, rules)``."""

    def check(self, rules):
        """Raise ConfigError if the optimizer cannot honour ``rules`` (before training starts)."""

    def build(self, model, learning_rate, rules):
        raise NotImplementedError


@OPTIMIZERS.register()
class SGD(Optimizer):
    """SGD with momentum (Paddle's ``Momentum``; PyTorch's ``SGD`` with dampening 0), L2 decay."""

    def __init__(self, momentum=0.9, nesterov=False):
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def build(self, model, learning_rate, rules):
        wd = rules.weight_decay
        return paddle.optimizer.Momentum(learning_rate=learning_rate, momentum=self.momentum,
                                         parameters=_coupled_decay_params(model, rules),
                                         weight_decay=L2Decay(wd) if wd else None, use_nesterov=self.nesterov,
                                         grad_clip=rules.grad_clip())


@OPTIMIZERS.register()
class Adam(Optimizer):
    """Adam with L2 decay added to the gradient (PyTorch's ``Adam(weight_decay=...)``)."""

    def __init__(self, beta1=0.9, beta2=0.999, epsilon=1e-8):
        self.beta1, self.beta2, self.epsilon = float(beta1), float(beta2), float(epsilon)

    def build(self, model, learning_rate, rules):
        wd = rules.weight_decay
        return paddle.optimizer.Adam(learning_rate=learning_rate, beta1=self.beta1, beta2=self.beta2,
                                     epsilon=self.epsilon, parameters=_coupled_decay_params(model, rules),
                                     weight_decay=L2Decay(wd) if wd else None, grad_clip=rules.grad_clip())


@OPTIMIZERS.register()
class AdamW(Optimizer):
    """AdamW (decoupled decay ``p -= lr * wd * p``, as PyTorch's); a parameter either decays or not."""

    def __init__(self, beta1=0.9, beta2=0.999, epsilon=1e-8):
        self.beta1, self.beta2, self.epsilon = float(beta1), float(beta2), float(epsilon)

    def check(self, rules):
        odd = sorted(rules.weight_decay_mults() - {0.0, 1.0})
        if odd:
            raise ConfigError(f'optimizer.custom_cfg: AdamW supports weight_decay_mult 0 or 1, got {odd[0]}')

    def build(self, model, learning_rate, rules):
        self.check(rules)
        params, no_decay = [], set()
        for _, p, lr_mult, wd_mult in rules(model):
            p.optimize_attr['learning_rate'] = lr_mult
            p.regularizer = None
            if wd_mult == 0.0:
                no_decay.add(p.name)
            params.append(p)
        return paddle.optimizer.AdamW(learning_rate=learning_rate, beta1=self.beta1, beta2=self.beta2,
                                      epsilon=self.epsilon, parameters=params, weight_decay=rules.weight_decay,
                                      grad_clip=rules.grad_clip(), apply_decay_param_fun=lambda n: n not in no_decay)
