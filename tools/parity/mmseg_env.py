"""Make mmsegmentation 1.2.2 importable on mmcv-lite (no compiled ops), for reference-side scripts.

``mmseg.utils.register_all_modules()`` imports ``mmcv._ext``; the pipelines and models used
here need none of its ops, so ``stub_mmcv_ext()`` registers a module whose every attribute is a
function that raises if called (PLATFORM.md). ``mmseg_config(rel)`` loads one of the configs
mmseg ships (``mmseg/.mim/configs/<rel>``). Only imports mmseg's dependencies when called, so a
zoo environment can import this file.
"""
import os
import sys
import types


def stub_mmcv_ext():
    if 'mmcv._ext' in sys.modules:
        return
    mod = types.ModuleType('mmcv._ext')

    def missing(name):
        if name.startswith('__'):
            raise AttributeError(name)

        def fail(*a, **k):
            raise RuntimeError(f'mmcv._ext.{name} is a stub (compiled mmcv ops are not installed)')
        return fail

    mod.__getattr__ = missing
    sys.modules['mmcv._ext'] = mod


def import_mmseg():
    """``mmseg`` with every module registered (the stub first)."""
    stub_mmcv_ext()
    import mmseg
    from mmseg.utils import register_all_modules
    register_all_modules()
    return mmseg


def mmseg_config(rel):
    """An mmengine ``Config`` of one of mmseg's own configs, e.g.
    ``'fastscnn/fast_scnn_8xb4-160k_cityscapes-512x1024.py'``."""
    mmseg = import_mmseg()
    from mmengine.config import Config
    return Config.fromfile(os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'configs', rel))
