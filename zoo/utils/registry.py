"""Component registries: classes register by decorator and are built from ``type:`` dicts."""
import difflib

from .errors import ConfigError


class Registry:
    """A name -> class/function table.

    >>> MODELS = Registry('model')
    >>> @MODELS.register()
    ... class FastSCNN: ...
    """

    def __init__(self, kind):
        self.kind = kind
        self._items = {}
        self.common = None

    def set_common(self, fn):
        """Keyword options every entry accepts besides its own constructor's (the optimizers'
        parameter-group rules, the schedulers' warmup): ``fn``'s keyword parameters are
        checked by the builder like the entry's, and ``type:`` dicts may mix the two."""
        if self.common is not None and self.common is not fn:
            raise KeyError(f'{self.kind} registry already has common options {self.common.__name__}')
        self.common = fn
        return fn

    def register(self, obj=None, *, name=None):
        def _add(o):
            key = name or o.__name__
            if key in self._items and self._items[key] is not o:
                raise KeyError(f'{self.kind} {key!r} is registered twice')
            self._items[key] = o
            return o

        return _add(obj) if obj is not None else _add

    def __contains__(self, key):
        return key in self._items

    def __getitem__(self, key):
        return self._items[key]

    def names(self):
        return sorted(self._items)

    def get(self, key, where='type'):
        """Look a name up; an unknown one raises ConfigError suggesting the closest name."""
        if key in self._items:
            return self._items[key]
        close = difflib.get_close_matches(str(key), self.names(), n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else f' (registered: {", ".join(self.names())})'
        raise ConfigError(f'{where}: unknown {self.kind} type {key!r}{hint}')


MODELS = Registry('model')
BACKBONES = Registry('backbone')
HEADS = Registry('head')
DATASETS = Registry('dataset')
TRANSFORMS = Registry('transform')
LOSSES = Registry('loss')
OPTIMIZERS = Registry('optimizer')
LR_SCHEDULERS = Registry('lr_scheduler')

ALL_REGISTRIES = (MODELS, BACKBONES, HEADS, DATASETS, TRANSFORMS, LOSSES)


def lookup_any(key, where='type'):
    """Find a component in any registry (nested ``type:`` dicts may name any kind)."""
    for reg in ALL_REGISTRIES:
        if key in reg:
            return reg[key]
    names = sorted({n for reg in ALL_REGISTRIES for n in reg.names()})
    close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ''
    raise ConfigError(f'{where}: unknown component type {key!r}{hint}')
