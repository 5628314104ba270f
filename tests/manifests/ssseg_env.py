"""Make sssegmentation 1.7.0 importable in a scratch environment without torchvision.

sssegmentation imports torchvision for its SAM segmentor only, and there is no CPU build of
torchvision here (PLATFORM.md). ``stub_torchvision()`` registers stub modules whose every
attribute is a function that raises if called. Used by the scripts that read sssegmentation
(``tests/manifests/mcibi_*.py``) before ``import ssseg``.
"""
import sys
import types

STUBBED = ('torchvision', 'torchvision.transforms', 'torchvision.transforms.functional', 'torchvision.ops',
           'torchvision.ops.boxes')


def _missing(name):
    if name.startswith('__'):
        raise AttributeError(name)

    def f(*a, **k):
        raise RuntimeError(f'torchvision stub: {name}')
    return f


def stub_torchvision():
    for name in STUBBED:
        mod = types.ModuleType(name)
        mod.__path__ = []
        mod.__getattr__ = _missing
        sys.modules[name] = mod
