"""``deploy.yaml``: everything ``deploy/python/infer.py`` needs beside the program (one job).

It carries the preprocessing (the config's ``export.transforms`` or, by default, its
``val_dataset.transforms`` with every argument spelled out), the output op and dtype, the
input shape, the class names and palette (the colors ``tools/predict.py`` uses) and the
SHA-256 of every file, so a deployment machine needs nothing else.
"""
import glob
import inspect
import os

import numpy as np
import yaml

from ..builder import dataset_num_classes
from ..utils.download import file_sha256
from ..utils.errors import ZooError
from ..utils.registry import DATASETS, TRANSFORMS

# The preprocessing ops deploy/python/infer.py re-implements in numpy/cv2.
DEPLOY_TRANSFORMS = ('Normalize', 'Resize', 'ResizeByShort')
PROGRAM_FILES = ('model.json', 'model.pdmodel')  # PIR (Paddle 3) first, legacy second


def _transform_args(cls, given):
    """The transform's arguments with defaults filled in from its signature."""
    args = {}
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        params = {}
    for name, p in params.items():
        if name == 'self' or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is not inspect.Parameter.empty:
            args[name] = p.default
    args.update(given)
    return args


def _plain(value):
    """YAML-safe plain values (tuples -> lists, numpy scalars -> Python)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, 'item') and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def deploy_transforms(cfg):
    """The preprocessing written into deploy.yaml (``export.transforms`` or the val transforms).

    Only ops infer.py implements are allowed: anything else (e.g. a random crop left in
    the val pipeline) would make deployment silently differ from evaluation.
    """
    key = 'export.transforms' if cfg.get('export.transforms') is not None else 'val_dataset.transforms'
    transforms = cfg.get(key)
    if transforms is None:
        transforms = []
    if not isinstance(transforms, list):
        raise cfg.error(key, f'expected a list of transform dicts, got {transforms!r}')
    out = []
    for i, t in enumerate(transforms):
        if not isinstance(t, dict) or 'type' not in t:
            raise cfg.error(f'{key}.{i}', f'expected a mapping with a "type" key, got {t!r}')
        if t['type'] not in DEPLOY_TRANSFORMS:
            raise cfg.error(f'{key}.{i}.type', f'{t["type"]} cannot be deployed (deploy/python/infer.py '
                            f'implements {", ".join(DEPLOY_TRANSFORMS)}); set export.transforms')
        given = {k: v for k, v in t.items() if k != 'type'}
        args = _transform_args(TRANSFORMS[t['type']], given) if t['type'] in TRANSFORMS else given
        out.append({'type': t['type'], **_plain(args)})
    return out


def _val_dataset_source(cfg):
    """The val dataset object when it can be built here (its files exist), else its class
    (an export machine need not hold the dataset), else None."""
    node = cfg.dic.get('val_dataset')
    if not isinstance(node, dict) or node.get('type') not in DATASETS:
        return None
    try:
        from ..builder import build_dataset
        return build_dataset(cfg, 'val')
    except (ZooError, OSError, TypeError, ValueError):
        return DATASETS[node['type']]


def class_meta(cfg, num_classes):
    """``(class_names, palette)`` for deploy.yaml: the val dataset's ``class_names`` / ``palette``
    (``CLASSES`` / ``PALETTE`` on datasets that predate them), names ``'0'...`` and the generated
    palette where the dataset has none: the colors ``tools/predict.py`` draws with."""
    from ..engine.visual import get_palette
    source = _val_dataset_source(cfg)
    names = getattr(source, 'class_names', None) or getattr(source, 'CLASSES', None)
    names = [str(n) for n in names] if names is not None and len(names) == num_classes else \
        [str(i) for i in range(num_classes)]
    palette_owner = source
    own = getattr(source, 'palette', None)
    if own is not None and getattr(source, 'PALETTE', None) is None:
        palette_owner = type('PaletteOf', (), {'PALETTE': own})  # get_palette reads PALETTE
    palette = get_palette(int(num_classes), palette_owner)
    return names, np.asarray(palette, dtype=np.uint8).tolist()


def config_num_classes(cfg):
    return cfg.get('model.num_classes') or dataset_num_classes(cfg)


def find_program(model_dir, prefix='model'):
    """The program file paddle.jit.save wrote: ``model.json`` (PIR) or ``model.pdmodel``."""
    for suffix in ('.json', '.pdmodel'):
        path = os.path.join(model_dir, prefix + suffix)
        if os.path.isfile(path):
            return os.path.basename(path)
    found = glob.glob(os.path.join(model_dir, prefix + '.*'))
    raise RuntimeError(f'paddle.jit.save wrote no program file in {model_dir} (found {found})')


# the deploy.yaml keys naming files of the export (their SHA-256 are recorded)
FILE_KEYS = ('model', 'params', 'onnx', 'bf16_model', 'bf16_params', 'onnx_int8')


def write_deploy_yaml(folder, deploy):
    """Record the SHA-256 of every file ``deploy`` names and write ``folder/deploy.yaml``.

    The digests let infer.py tell a program/params file from another export (Paddle Inference
    would otherwise run a params file of another model if the tensor count matches)."""
    names = dict.fromkeys(deploy[k] for k in FILE_KEYS if deploy.get(k))  # a file may serve two keys
    deploy['sha256'] = {n: file_sha256(os.path.join(folder, n)) for n in names}
    with open(os.path.join(folder, 'deploy.yaml'), 'w', encoding='utf-8') as f:
        yaml.safe_dump({'Deploy': deploy}, f, sort_keys=False, default_flow_style=None)
    return deploy
