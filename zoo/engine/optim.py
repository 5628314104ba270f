"""Optimizers, parameter groups and learning-rate schedules (per iteration).

YAML::

    optimizer:
      type: SGD              # SGD (momentum) | AdamW
      momentum: 0.9
      weight_decay: 4.0e-5
      no_weight_decay_norm: false   # BN/LN/GN weights and biases without decay
      no_weight_decay_bias: false   # every bias without decay
      backbone_lr_mult: 1.0         # lr multiplier of parameters under ``backbone.``
      custom_cfg:                   # PaddleSeg-style: name substring -> multipliers
        - {name: pos_embed, lr_mult: 1.0, weight_decay_mult: 0.0}
    lr_scheduler:
      type: PolynomialDecay
      learning_rate: 0.01
      end_lr: 1.0e-4          # mmseg's eta_min / PaddleSeg's end_lr
      power: 0.9
      warmup_iters: 0         # linear warmup (PaddleSeg LinearWarmup semantics)
      warmup_start_lr: 0.0

During warmup the lr rises linearly from ``warmup_start_lr`` to ``learning_rate``; then it
decays polynomially over the remaining ``iters - warmup_iters`` iterations, as PaddleSeg's
``LinearWarmup(PolynomialDecay(decay_steps=iters - warmup_iters))``. Without warmup this equals
mmseg's ``PolyLR(eta_min=end_lr, power, by_epoch=False)`` over ``iters``.
"""
import difflib

import paddle
import paddle.nn as nn
from paddle.regularizer import L2Decay

from ..utils.config import type_name, value_matches
from ..utils.errors import ConfigError

OPTIMIZER_KEYS = {
    'SGD': {'momentum': float, 'weight_decay': float, 'nesterov': bool},
    'AdamW': {'beta1': float, 'beta2': float, 'epsilon': float, 'weight_decay': float},
}
COMMON_OPT_KEYS = {'type': str, 'no_weight_decay_norm': bool, 'no_weight_decay_bias': bool,
                   'backbone_lr_mult': float, 'custom_cfg': list, 'grad_clip_norm': float}
SCHEDULER_KEYS = {
    'PolynomialDecay': {'learning_rate': float, 'end_lr': float, 'power': float, 'warmup_iters': int,
                        'warmup_start_lr': float, 'decay_steps': int},
    'ConstantLR': {'learning_rate': float, 'warmup_iters': int, 'warmup_start_lr': float},
}
NORM_TYPES = (nn.BatchNorm, nn.BatchNorm1D, nn.BatchNorm2D, nn.BatchNorm3D, nn.SyncBatchNorm, nn.LayerNorm,
              nn.GroupNorm, nn.InstanceNorm2D)


def _check_keys(cfg, section, allowed):
    node = cfg.dic[section]
    for k, v in node.items():
        if k not in allowed:
            close = difflib.get_close_matches(k, list(allowed), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f' (accepted: {", ".join(allowed)})'
            raise cfg.error(f'{section}.{k}', f'unknown key for {node.get("type")}{hint}')
        if not value_matches(v, allowed[k]):
            raise cfg.error(f'{section}.{k}', f'expected {type_name(allowed[k])}, got {v!r}')


def _check_type(cfg, section, table):
    t = cfg.get(f'{section}.type')
    if t not in table:
        close = difflib.get_close_matches(str(t), list(table), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f' (available: {", ".join(table)})'
        raise cfg.error(f'{section}.type', f'unknown {section} type {t!r}{hint}')
    return t


def check_optim_config(cfg):
    cfg.require('optimizer', 'lr_scheduler', 'lr_scheduler.learning_rate', 'iters')
    t = _check_type(cfg, 'optimizer', OPTIMIZER_KEYS)
    _check_keys(cfg, 'optimizer', {**COMMON_OPT_KEYS, **OPTIMIZER_KEYS[t]})
    for i, item in enumerate(cfg.get('optimizer.custom_cfg') or []):
        if not isinstance(item, dict) or 'name' not in item or set(item) - {'name', 'lr_mult', 'weight_decay_mult'}:
            raise cfg.error(f'optimizer.custom_cfg.{i}', 'expected {name, lr_mult, weight_decay_mult}')
    s = _check_type(cfg, 'lr_scheduler', SCHEDULER_KEYS)
    _check_keys(cfg, 'lr_scheduler', {'type': str, **SCHEDULER_KEYS[s]})
    warm = cfg.get('lr_scheduler.warmup_iters', 0) or 0
    if warm >= cfg.iters:
        raise cfg.error('lr_scheduler.warmup_iters', f'{warm} must be smaller than iters ({cfg.iters})')


class PolynomialDecay(paddle.optimizer.lr.LRScheduler):
    """Linear warmup then ``(lr - end_lr) * (1 - t / T) ** power + end_lr``, stepped per iteration."""

    def __init__(self, learning_rate, iters, end_lr=0.0, power=0.9, warmup_iters=0, warmup_start_lr=0.0,
                 decay_steps=None):
        self.base = float(learning_rate)
        self.end_lr = float(end_lr)
        self.power = float(power)
        self.warmup_iters = int(warmup_iters or 0)
        self.warmup_start_lr = float(warmup_start_lr or 0.0)
        self.decay_steps = int(decay_steps or (iters - self.warmup_iters))
        super().__init__(learning_rate=self.base, last_epoch=-1)

    def get_lr(self):
        it = self.last_epoch
        if it < self.warmup_iters:
            return self.warmup_start_lr + (self.base - self.warmup_start_lr) * it / self.warmup_iters
        t = min(it - self.warmup_iters, self.decay_steps)
        return (self.base - self.end_lr) * (1 - t / self.decay_steps) ** self.power + self.end_lr


class ConstantLR(PolynomialDecay):
    def __init__(self, learning_rate, iters, warmup_iters=0, warmup_start_lr=0.0):
        super().__init__(learning_rate, iters, end_lr=learning_rate, power=1.0, warmup_iters=warmup_iters,
                         warmup_start_lr=warmup_start_lr)


def build_lr_scheduler(cfg):
    node = dict(cfg.dic['lr_scheduler'])
    t = node.pop('type')
    cls = {'PolynomialDecay': PolynomialDecay, 'ConstantLR': ConstantLR}[t]
    return cls(iters=cfg.iters, **node)


def _param_groups(model, node):
    """Per-parameter lr multiplier and weight-decay multiplier from the optimizer config."""
    norm_params = set()
    for layer in model.sublayers(include_self=True):
        if isinstance(layer, NORM_TYPES):
            norm_params.update(id(p) for p in layer.parameters(include_sublayers=False))
    custom = node.get('custom_cfg') or []
    out = []
    for name, p in model.named_parameters():
        if p.stop_gradient:
            continue
        lr_mult, wd_mult = 1.0, 1.0
        bare = name[len('_layers.'):] if name.startswith('_layers.') else name  # DataParallel prefix
        if bare.startswith('backbone.'):
            lr_mult *= float(node.get('backbone_lr_mult', 1.0))
        if node.get('no_weight_decay_norm') and id(p) in norm_params:
            wd_mult = 0.0
        if node.get('no_weight_decay_bias') and bare.endswith('bias'):
            wd_mult = 0.0
        for c in custom:
            if c['name'] in bare:
                lr_mult *= float(c.get('lr_mult', 1.0))
                wd_mult *= float(c.get('weight_decay_mult', 1.0))
        out.append((name, p, lr_mult, wd_mult))
    return out


def build_optimizer(cfg, model, lr_scheduler):
    node = dict(cfg.dic['optimizer'])
    t = node['type']
    wd = float(node.get('weight_decay', 0.0) or 0.0)
    groups = _param_groups(model, node)
    params = []
    no_decay_names = set()
    for name, p, lr_mult, wd_mult in groups:
        p.optimize_attr['learning_rate'] = lr_mult  # Paddle's per-parameter lr multiplier
        if wd_mult != 1.0:
            if t == 'SGD':
                p.regularizer = L2Decay(wd * wd_mult)  # a parameter's own regularizer overrides the global one
            elif wd_mult == 0.0:
                no_decay_names.add(p.name)
            else:
                raise ConfigError(f'{cfg.path}: optimizer: AdamW supports weight_decay_mult 0 or 1, got {wd_mult}')
        params.append(p)
    clip = nn.ClipGradByGlobalNorm(float(node['grad_clip_norm'])) if node.get('grad_clip_norm') else None
    if t == 'SGD':
        return paddle.optimizer.Momentum(learning_rate=lr_scheduler, momentum=float(node.get('momentum', 0.9)),
                                         parameters=params, weight_decay=L2Decay(wd) if wd else None,
                                         use_nesterov=bool(node.get('nesterov', False)), grad_clip=clip)
    return paddle.optimizer.AdamW(learning_rate=lr_scheduler, beta1=float(node.get('beta1', 0.9)),
                                  beta2=float(node.get('beta2', 0.999)), epsilon=float(node.get('epsilon', 1e-8)),
                                  parameters=params, weight_decay=wd, grad_clip=clip,
                                  apply_decay_param_fun=lambda n: n not in no_decay_names)
