"""Build components from ``type:`` dicts, checking them against the constructor first.

The same checks run before training starts (:func:`validate_config`) so that a typo in a
config fails in one line naming the file and key, not after an hour of data loading.
"""
import copy
import difflib
import inspect

from .utils.config import Config, type_name, value_matches
from .utils.errors import ConfigError, ZooError
from .utils.registry import DATASETS, LOSSES, LR_SCHEDULERS, MODELS, OPTIMIZERS, lookup_any

_PLAIN_TYPES = (int, float, str, bool, list, tuple, dict)
# string annotations (``from __future__ import annotations``, as in paddle.optimizer.lr)
_NAMED_TYPES = {t.__name__: t for t in _PLAIN_TYPES}


def _expected_type(param):
    ann = _NAMED_TYPES.get(param.annotation, param.annotation) if isinstance(param.annotation, str) \
        else param.annotation
    if ann in _PLAIN_TYPES:
        return list if ann is tuple else ann
    default = param.default
    if default is inspect.Parameter.empty or default is None:
        return None
    if isinstance(default, bool):
        return bool
    if isinstance(default, float):
        return float
    if isinstance(default, int):
        # an int default that a float could sensibly replace (e.g. lr 1) is still typed int;
        # YAML users write 1.0 for floats, and ints are accepted for floats anyway.
        return int
    for t in (str, list, tuple, dict):
        if isinstance(default, t):
            return list if t is tuple else t
    return None


def _signature(obj):
    target = obj.__init__ if inspect.isclass(obj) else obj
    sig = inspect.signature(target)
    params = [p for name, p in sig.parameters.items() if name != 'self']
    has_var_kw = any(p.kind == p.VAR_KEYWORD for p in params)
    named = {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    return named, has_var_kw


def _common_params(registry):
    """The keyword parameters every entry of ``registry`` accepts (``Registry.set_common``)."""
    if registry is None or registry.common is None:
        return {}
    return _signature(registry.common)[0]


def check_component(node, key, cfg, registry=None, provided=()):
    """Check a ``type:`` dict (recursively) against its class; return the class.

    ``provided`` names constructor arguments the builder fills itself (e.g. num_classes).
    Keys of the registry's common options (:meth:`Registry.set_common`) are accepted too.
    """
    if not isinstance(node, dict):
        raise cfg.error(key, f'expected a mapping with a "type" key, got {node!r}')
    if 'type' not in node:
        raise cfg.error(key, 'missing required key "type"')
    where = cfg.where(f'{key}.type')
    cls = registry.get(node['type'], where) if registry is not None else lookup_any(node['type'], where)
    named, has_var_kw = _signature(cls)
    named = {**_common_params(registry), **named}
    for arg, value in node.items():
        if arg == 'type':
            continue
        sub = f'{key}.{arg}'
        if arg not in named and not has_var_kw:
            close = difflib.get_close_matches(arg, list(named), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f' (accepted: {", ".join(named)})'
            raise cfg.error(sub, f'{node["type"]} has no parameter {arg!r}{hint}')
        if isinstance(value, dict) and 'type' in value:
            check_component(value, sub, cfg)
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) and 'type' in v for v in value):
            for i, v in enumerate(value):
                check_component(v, f'{sub}.{i}', cfg)
            continue
        if arg in named:
            expected = _expected_type(named[arg])
            if expected is not None and not value_matches(value, expected):
                raise cfg.error(sub, f'{node["type"]}.{arg} expects {type_name(expected)}, got {value!r}')
    for name, p in named.items():
        if p.default is inspect.Parameter.empty and name not in node and name not in provided:
            raise cfg.error(f'{key}.{name}', f'missing required key {name!r} for {node["type"]}')
    return cls


def _build_value(value):
    if isinstance(value, dict) and 'type' in value:
        return _instantiate(value)
    if isinstance(value, list) and value and all(isinstance(v, dict) and 'type' in v for v in value):
        return [_instantiate(v) for v in value]
    return value


def _instantiate(node, registry=None, **extra):
    """Build a checked ``type:`` dict; ``extra`` fills the parameters the class has and the node omits."""
    node = copy.deepcopy(node)
    cls = registry[node.pop('type')] if registry is not None else lookup_any(node.pop('type'))
    kwargs = {k: _build_value(v) for k, v in node.items()}
    named, has_var_kw = _signature(cls)
    for k, v in extra.items():
        if k in named or has_var_kw:
            kwargs.setdefault(k, v)
    return cls(**kwargs)


def _split_common(node, registry):
    """``(own type: dict, common options)`` of a checked node (own parameters win a name clash)."""
    own_names = _signature(registry[node['type']])[0]
    common_names = _common_params(registry)
    own = {k: v for k, v in node.items() if k == 'type' or k in own_names or k not in common_names}
    return own, {k: v for k, v in node.items() if k not in own}


def _in_file(cfg, build):
    """Run ``build()``; a ConfigError naming a key (``section.key: ...``) gets the file that set it."""
    try:
        return build()
    except ConfigError as e:
        key, sep, rest = str(e).partition(': ')
        if sep and ' ' not in key and cfg.get(key.split('.')[0]) is not None:
            raise ConfigError(f'{cfg.where(key)}: {rest}') from None
        raise


def as_config(config, **overrides):
    if isinstance(config, Config):
        return config
    return Config(config, **overrides)


# -- datasets ------------------------------------------------------------------------

def _dataset_key(split):
    key = {'train': 'train_dataset', 'val': 'val_dataset'}.get(split)
    if key is None:
        raise ValueError(f'split must be train or val, got {split!r}')
    return key


def build_dataset(config, split='train'):
    cfg = as_config(config)
    key = _dataset_key(split)
    cfg.require(key)
    check_component(cfg.dic[key], key, cfg, DATASETS)
    return _instantiate(cfg.dic[key], DATASETS)


def dataset_num_classes(cfg):
    """num_classes from either dataset section (explicit value or the class default)."""
    for key in ('train_dataset', 'val_dataset'):
        node = cfg.dic.get(key)
        if not isinstance(node, dict) or 'type' not in node or node['type'] not in DATASETS:
            continue
        if node.get('num_classes') is not None:
            return node['num_classes']
        cls = DATASETS[node['type']]
        n = getattr(cls, 'NUM_CLASSES', None)
        if n is not None:
            return n
    return None


# -- model ---------------------------------------------------------------------------

def build_model(config, **overrides):
    """Build the model of a config (path, dict or Config); ``zoo.build_model('configs/x.yml')``."""
    cfg = as_config(config, **overrides)
    cfg.require('model')
    node = copy.deepcopy(cfg.dic['model'])
    provided = ()
    if node.get('num_classes') is None:
        n = dataset_num_classes(cfg)
        if n is not None:
            node['num_classes'] = n
            provided = ('num_classes',)
    check_component(node, 'model', cfg, MODELS, provided=provided)
    try:
        return _instantiate(node, MODELS)
    except ZooError:
        raise
    except (ValueError, TypeError, AssertionError) as e:
        # a layer refusing a config value (num_classes: 0, a negative width): one line naming the
        # section; ZOO_DEBUG=1 still shows where it came from
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise cfg.error('model', f'{node["type"]} cannot be built from these values: {first}') from e


# -- losses --------------------------------------------------------------------------

def build_losses(config):
    """``{'types': [loss, ...], 'coef': [float, ...]}``; one loss per model output.

    As in PaddleSeg, a single loss type with several coefficients applies to every head.
    """
    cfg = as_config(config)
    cfg.require('loss')
    node = cfg.dic['loss']
    types, coef = node.get('types'), node.get('coef')
    extra = set(node) - {'types', 'coef'}
    if extra:
        raise cfg.error(f'loss.{sorted(extra)[0]}', 'unknown key (loss takes "types" and "coef")')
    if not isinstance(types, list) or not types:
        raise cfg.error('loss.types', 'expected a non-empty list of loss dicts')
    if not isinstance(coef, list) or not all(value_matches(c, float) for c in coef) or not coef:
        raise cfg.error('loss.coef', f'expected a non-empty list of numbers, got {coef!r}')
    if len(types) == 1 and len(coef) > 1:
        types = types * len(coef)
    if len(types) != len(coef):
        raise cfg.error('loss.coef', f'has {len(coef)} coefficients for {len(types)} loss types')
    for i, t in enumerate(types):
        check_component(t, f'loss.types.{i}', cfg, LOSSES)
    return {'types': [_instantiate(t, LOSSES) for t in types], 'coef': [float(c) for c in coef]}


# -- optimizer and learning-rate schedule -----------------------------------------------

def _lr_scheduler_parts(cfg):
    cfg.require('lr_scheduler', 'iters')
    node = cfg.dic['lr_scheduler']
    check_component(node, 'lr_scheduler', cfg, LR_SCHEDULERS, provided=('iters',))
    own, common = _split_common(node, LR_SCHEDULERS)
    warmup = _in_file(cfg, lambda: LR_SCHEDULERS.common(iters=cfg.iters, **common))
    return own, warmup


def build_lr_scheduler(config):
    """The per-iteration lr schedule of ``lr_scheduler:`` (zoo/optim/lr.py), warmup included."""
    cfg = as_config(config)
    own, warmup = _lr_scheduler_parts(cfg)
    try:
        schedule = _in_file(cfg, lambda: _instantiate(own, LR_SCHEDULERS, iters=warmup.schedule_iters))
    except (TypeError, ValueError) as e:  # raised by a paddle.optimizer.lr class on a bad value
        raise cfg.error('lr_scheduler', f'{own["type"]}: {e}') from None
    return warmup.wrap(schedule)


def _optimizer_parts(cfg):
    cfg.require('optimizer')
    node = cfg.dic['optimizer']
    check_component(node, 'optimizer', cfg, OPTIMIZERS)
    own, common = _split_common(node, OPTIMIZERS)
    optimizer = _in_file(cfg, lambda: _instantiate(own, OPTIMIZERS))
    rules = _in_file(cfg, lambda: OPTIMIZERS.common(**common))
    _in_file(cfg, lambda: optimizer.check(rules))
    return optimizer, rules


def build_optimizer(config, model, lr_scheduler):
    """The ``optimizer:`` of a config over ``model``'s parameters (zoo/optim/optimizers.py)."""
    optimizer, rules = _optimizer_parts(as_config(config))
    return optimizer.build(model, lr_scheduler, rules)


def validate_config(config, for_training=True):
    """Check every component of a config without building it (fails fast, one line)."""
    cfg = as_config(config)
    cfg.require('model')
    provided = ('num_classes',) if dataset_num_classes(cfg) is not None else ()
    check_component(cfg.dic['model'], 'model', cfg, MODELS, provided=provided)
    for key in ('train_dataset', 'val_dataset'):
        if key in cfg.dic:
            check_component(cfg.dic[key], key, cfg, DATASETS)
    if for_training:
        cfg.require('train_dataset', 'iters', 'loss', 'optimizer', 'lr_scheduler')
        build_losses(cfg)
        _optimizer_parts(cfg)
        build_lr_scheduler(cfg)
    return cfg
