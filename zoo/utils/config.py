"""PaddleSeg-compatible YAML configs.

* ``_base_: path`` or a list of paths, relative to the file that names them; bases are
  merged in order, then the file itself on top.
* Dicts merge recursively, lists and scalars are replaced. A dict holding
  ``_inherited_: false`` replaces the inherited dict instead of merging into it.
* ``--opts a.b.c=value`` overrides any key; the value is parsed as YAML (so ``0.1``
  is a float, ``[1, 2]`` a list, ``true`` a bool).
* ``--iters``, ``--batch_size``, ``--learning_rate`` are shortcuts for
  ``iters``, ``batch_size`` and ``lr_scheduler.learning_rate``.

Every error is a :class:`ConfigError` naming the file (the one that set the key) and the
key, in one line.
"""
import copy
import difflib
import os

import yaml

from .errors import ConfigError

# Top-level keys and the Python type each must have.
TOP_LEVEL_KEYS = {
    'batch_size': int,
    'iters': int,
    'train_dataset': dict,
    'val_dataset': dict,
    'optimizer': dict,
    'lr_scheduler': dict,
    'loss': dict,
    'model': dict,
    'test_config': dict,
    'export': dict,
    'train': dict,
}
_META_KEYS = ('_base_', '_inherited_')


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _non_negative_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number_or_list(value):
    return value_matches(value, float) or value_matches(value, list)


def _input_shape(value):
    return (isinstance(value, list) and len(value) == 4 and value[1] == 3
            and all(_positive_int(v) or (v == -1 and not isinstance(v, bool)) for v in value))


# test_config.aug_resize: how test-time augmentation makes each scale's input (engine/inference.py)
AUG_RESIZE = ('image', 'tensor', 'tensor_factor')

# The plain-data sections: key -> (expected type, or (check, what it expects)). Components (the
# datasets, model, loss, optimizer, lr_scheduler) are checked against their constructors by the
# builder. The meaning of test_config is engine/inference.parse_test_config's, of export
# zoo/export.py's; every key they read is listed here, so a typo fails when the config loads.
SECTION_SCHEMA = {
    'train': {
        'log_iters': (_positive_int, 'a positive integer'),
        'save_interval': (_positive_int, 'a positive integer'),
        'eval_interval': (_positive_int, 'a positive integer'),
        'keep_checkpoint_max': (_positive_int, 'a positive integer'),
        'eval_aug': bool,
        'num_vis': (_non_negative_int, 'a non-negative integer'),
    },
    'test_config': {
        'is_slide': bool, 'crop_size': list, 'stride': list, 'aug_eval': bool,
        'scales': (_number_or_list, 'a number or a list of numbers'),
        'flip_horizontal': bool, 'flip_vertical': bool, 'window_softmax': bool,
        'aug_resize': (lambda v: v in AUG_RESIZE, ' or '.join(AUG_RESIZE)),
    },
    'export': {
        'transforms': list,
        'input_shape': (_input_shape, 'four integers N C H W with C = 3 (-1: dynamic)'),
    },
}
TEST_CONFIG_KEYS = tuple(SECTION_SCHEMA['test_config'])


def _read_yaml(path, named_by=None):
    if not os.path.isfile(path):
        who = f'{named_by}: _base_: ' if named_by else ''
        raise ConfigError(f'{who}config file {path!r} does not exist')
    try:
        with open(path, 'r', encoding='utf-8') as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        line = getattr(getattr(e, 'problem_mark', None), 'line', None)
        at = f' (line {line + 1})' if line is not None else ''
        raise ConfigError(f'{path}: not valid YAML{at}: {getattr(e, "problem", e)}') from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f'{path}: the top level must be a mapping of keys, got {type(data).__name__}')
    return data


def _record_origins(node, path, prefix, origins):
    """Remember which file set each key (dotted path) so errors can name it."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in _META_KEYS:
                continue
            key = f'{prefix}.{k}' if prefix else str(k)
            origins[key] = path
            _record_origins(v, path, key, origins)


def merge(base, override):
    """Recursive dict merge: dicts merge, everything else (lists included) is replaced."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if k == '_base_':
            continue
        if isinstance(v, dict) and isinstance(out.get(k), dict) and v.get('_inherited_', True):
            out[k] = merge(out[k], v)
        else:
            v = copy.deepcopy(v)
            if isinstance(v, dict):
                v.pop('_inherited_', None)
            out[k] = v
    return out


def _strip_meta(node):
    if isinstance(node, dict):
        node.pop('_inherited_', None)
        for v in node.values():
            _strip_meta(v)
    elif isinstance(node, list):
        for v in node:
            _strip_meta(v)
    return node


def load_yaml_with_bases(path, _chain=(), origins=None, named_by=None):
    """Load a YAML file and its ``_base_`` chain; returns (merged dict, origins)."""
    path = os.path.normpath(path)
    if origins is None:
        origins = {}
    if path in _chain:
        raise ConfigError(f'{path}: _base_ cycle: {" -> ".join(_chain + (path,))}')
    data = _read_yaml(path, named_by)
    bases = data.get('_base_', [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f'{path}: _base_: expected a path or a list of paths, got {bases!r}')
    merged = {}
    for b in bases:
        bpath = os.path.join(os.path.dirname(path), b)
        bdata, _ = load_yaml_with_bases(bpath, _chain + (path,), origins, named_by=path)
        merged = merge(merged, bdata)
    _record_origins(data, path, '', origins)
    merged = merge(merged, data)
    return merged, origins


def parse_opts(opts):
    """``['a.b=1', 'c=[1,2]']`` -> ``[('a.b', 1), ('c', [1, 2])]`` with YAML typing."""
    out = []
    for item in opts or []:
        if '=' not in item:
            raise ConfigError(f'--opts: {item!r} must look like key.subkey=value')
        key, value = item.split('=', 1)
        key = key.strip()
        if not key:
            raise ConfigError(f'--opts: {item!r} has an empty key')
        try:
            value = yaml.safe_load(value) if value.strip() != '' else ''
        except yaml.YAMLError:
            raise ConfigError(f'--opts: {key}: cannot parse value {value!r}') from None
        out.append((key, value))
    return out


def set_by_path(dic, dotted, value, where='--opts'):
    keys = dotted.split('.')
    node = dic
    for i, k in enumerate(keys[:-1]):
        if isinstance(node, list):
            try:
                node = node[int(k)]
                continue
            except (ValueError, IndexError):
                raise ConfigError(f'{where}: {dotted}: {".".join(keys[:i + 1])} is a list; use an index') from None
        if k not in node or node[k] is None:
            node[k] = {}
        elif not isinstance(node[k], (dict, list)):
            raise ConfigError(f'{where}: {dotted}: {".".join(keys[:i + 1])} is not a mapping')
        node = node[k]
    last = keys[-1]
    if isinstance(node, list):
        try:
            node[int(last)] = value
        except (ValueError, IndexError):
            raise ConfigError(f'{where}: {dotted}: bad list index {last!r}') from None
    else:
        node[last] = value


def type_name(t):
    return {int: 'an integer', float: 'a number', dict: 'a mapping', list: 'a list', str: 'a string',
            bool: 'true/false'}.get(t, t.__name__)


def value_matches(value, expected):
    """Loose YAML-friendly type check: ints pass as floats, tuples as lists."""
    if value is None:
        return True
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected in (list, tuple):
        return isinstance(value, (list, tuple))
    if expected is bool:
        return isinstance(value, bool)
    return isinstance(value, expected)


class Config:
    """A merged, validated training/evaluation config.

    ``Config(path, opts=['model.num_classes=3'], iters=100)``; the merged dict is ``cfg.dic``.
    """

    def __init__(self, path, opts=None, learning_rate=None, batch_size=None, iters=None):
        if isinstance(path, dict):
            self.path = '<dict>'
            self.dic = _strip_meta(copy.deepcopy(path))
            self.origins = {}
            _record_origins(self.dic, self.path, '', self.origins)
        else:
            self.path = os.path.normpath(str(path))
            dic, self.origins = load_yaml_with_bases(self.path)
            self.dic = _strip_meta(dic)
        self.dic.pop('_base_', None)
        for key, value in parse_opts(opts):
            set_by_path(self.dic, key, value)
            self.origins[key] = '--opts'
        if iters is not None:
            self.dic['iters'] = iters
            self.origins['iters'] = '--iters'
        if batch_size is not None:
            self.dic['batch_size'] = batch_size
            self.origins['batch_size'] = '--batch_size'
        if learning_rate is not None:
            self.dic.setdefault('lr_scheduler', {})['learning_rate'] = learning_rate
            self.origins['lr_scheduler.learning_rate'] = '--learning_rate'
        self._check_top_level()

    # -- error helpers -------------------------------------------------------------
    def where(self, key):
        """``file: key`` for error messages (the file that last set the key)."""
        probe = key
        while probe:
            if probe in self.origins:
                return f'{self.origins[probe]}: {key}'
            probe = probe.rpartition('.')[0]
        return f'{self.path}: {key}'

    def error(self, key, msg):
        return ConfigError(f'{self.where(key)}: {msg}')

    def _check_top_level(self):
        for key, value in self.dic.items():
            if key not in TOP_LEVEL_KEYS:
                close = difflib.get_close_matches(str(key), list(TOP_LEVEL_KEYS), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f' (allowed: {", ".join(TOP_LEVEL_KEYS)})'
                raise self.error(key, f'unknown top-level key{hint}')
            expected = TOP_LEVEL_KEYS[key]
            if not value_matches(value, expected):
                raise self.error(key, f'expected {type_name(expected)}, got {value!r}')
        for key in ('batch_size', 'iters'):
            v = self.dic.get(key)
            if v is not None and v <= 0:
                raise self.error(key, f'must be positive, got {v}')
        for section, schema in SECTION_SCHEMA.items():
            self._check_section(section, schema)

    def _check_section(self, section, schema):
        for key, value in (self.dic.get(section) or {}).items():
            where = f'{section}.{key}'
            if key not in schema:
                close = difflib.get_close_matches(str(key), list(schema), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f' (accepted: {", ".join(schema)})'
                raise self.error(where, f'unknown key{hint}')
            rule = schema[key]
            ok, expected = (rule[0](value), rule[1]) if isinstance(rule, tuple) else \
                (value_matches(value, rule), type_name(rule))
            if value is not None and not ok:
                raise self.error(where, f'expected {expected}, got {value!r}')

    def require(self, *keys):
        """Raise ConfigError unless each dotted key is present (and not null)."""
        for key in keys:
            node = self.dic
            for part in key.split('.'):
                if not isinstance(node, dict) or node.get(part) is None:
                    raise ConfigError(f'{self.path}: missing required key {key!r}')
                node = node[part]

    # -- convenient views ----------------------------------------------------------
    def get(self, key, default=None):
        node = self.dic
        for part in key.split('.'):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    @property
    def batch_size(self):
        return self.dic.get('batch_size', 1)

    @property
    def iters(self):
        return self.dic.get('iters')

    @property
    def test_config(self):
        return dict(self.dic.get('test_config') or {})

    def __repr__(self):
        return f'Config({self.path!r})\n' + yaml.safe_dump(self.dic, sort_keys=False)


def dump_with_origins(cfg):
    """The resolved config as YAML, each key followed by ``# <file that set it>`` (``--opts``,
    ``--iters`` ... for command-line overrides). ``yaml.safe_load`` of the text gives ``cfg.dic``."""
    lines = [f'# resolved config of {cfg.path}; each key names the file (or flag) that set it']

    def origin(key):
        where = cfg.where(key)
        return where[:-len(key) - 2] if where.endswith(f': {key}') else where

    def scalar(v):
        return yaml.safe_dump(v, default_flow_style=True, width=10 ** 6).strip().removesuffix('\n...').strip()

    def emit(node, prefix, indent):
        pad = '  ' * indent
        for k, v in node.items():
            key = f'{prefix}.{k}' if prefix else str(k)
            name = yaml.safe_dump(k, default_flow_style=True).strip().removesuffix('\n...').strip()
            if isinstance(v, dict) and v:
                lines.append(f'{pad}{name}:  # {origin(key)}')
                emit(v, key, indent + 1)
            elif isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
                inner = sorted(f'{k2[len(key) + 1:]} from {o}' for k2, o in cfg.origins.items()
                               if k2.startswith(key + '.') and o != cfg.origins.get(key))
                lines.append(f'{pad}{name}:  # {origin(key)}' + (f' ({"; ".join(inner)})' if inner else ''))
                block = yaml.safe_dump(v, default_flow_style=None, sort_keys=False, width=10 ** 6)
                lines.extend(f'{pad}  {ln}' for ln in block.rstrip('\n').splitlines())
            else:
                lines.append(f'{pad}{name}: {scalar(v)}  # {origin(key)}')

    emit(cfg.dic, '', 0)
    return '\n'.join(lines) + '\n'
