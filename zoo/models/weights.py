"""The weights table: every published checkpoint the zoo can load, with its metadata
(torchvision's weights enums, timm's pretrained configs).

Each model file registers its rows next to its importers::

    register_weights(Weights('fast_scnn_cityscapes_mmseg', 'FastSCNN', 'mmseg', URL, sha256='0cec9937',
                             config='configs/fast_scnn/...yml', metric='Cityscapes val mIoU', miou=70.96,
                             recipe='...'))

``pretrained:``, ``--model_path`` and ``tools/convert_weights.py --input`` accept a row's name
or its URL (:func:`zoo.models.convert.load_weights`): the row tells which importer reads the
file, so nothing is guessed. ``tools/convert_weights.py --list`` prints the table;
``docs/weights.md`` carries that listing (a test keeps the two equal).
"""
import copy
import os
from dataclasses import dataclass

from zoo.utils.download import name_hash_prefix

_TABLE = {}


@dataclass(frozen=True)
class Weights:
    """One published checkpoint.

    name: the row's key (``<model>_<backbone>_<dataset>_<source>``).
    model: the model or backbone class the file loads into (``FastSCNN``, ``ResNet``, ...).
    source: the project that wrote it (an importer source of ``zoo.models.convert``).
    url: where it is published.
    sha256: its SHA-256, or the leading hex digits its publisher put in the file name
        (OpenMMLab and timm do: ``-0cec9937.pth``); None when the publisher gives none.
    config: the config of this zoo that reproduces / evaluates it (None for ImageNet weights).
    metric, miou: what the publisher reports (e.g. ``'Cityscapes val mIoU (ss)'``, 70.96).
    recipe: the training recipe in a few words.
    """
    name: str
    model: str
    source: str
    url: str
    sha256: str = None
    config: str = None
    metric: str = None
    miou: float = None
    recipe: str = ''


def config_weights(model, source, url, config, metric, miou, recipe='', name=None):
    """A row for a checkpoint that a config of this zoo reproduces; named after the config."""
    return Weights(name or os.path.splitext(os.path.basename(config))[0], model, source, url, name_hash_prefix(url),
                   config, metric, miou, recipe)


def register_weights(*rows):
    for row in rows:
        if row.name in _TABLE and _TABLE[row.name] != row:
            raise KeyError(f'weights {row.name!r} are registered twice')
        _TABLE[row.name] = row


def lookup_weights(spec):
    """The row named ``spec`` or published at URL ``spec``; None for anything else (a path)."""
    if not isinstance(spec, str):
        return None
    if spec in _TABLE:
        return _TABLE[spec]
    return next((row for row in _TABLE.values() if row.url == spec), None)


def weights_table(model=None):
    """The rows (of one model class), sorted by name."""
    return [row for _, row in sorted(_TABLE.items()) if model is None or row.model == model]


def weights_markdown():
    """The table as Markdown (``tools/convert_weights.py --list``; ``docs/weights.md``)."""
    lines = ['| name | loads into | source | reported | sha256 | config (or recipe) |',
             '| --- | --- | --- | --- | --- | --- |']
    for row in weights_table():
        reported = f'{row.metric} {row.miou:.2f}' if row.miou is not None else (row.metric or '')
        config = f'`{row.config}`' if row.config else row.recipe
        sha = f'`{row.sha256}`' if row.sha256 else ''
        lines.append(f'| [{row.name}]({row.url}) | `{row.model}` | {row.source} | {reported} | {sha} | {config} |')
    return '\n'.join(lines) + '\n'


def without_pretrained(cfg):
    """A copy of the config whose model (and nested backbone) loads no pretrained weights.

    When the weights come from ``--model_path`` (or do not matter, as in a benchmark), fetching
    ImageNet weights first would only cost a download (and fail offline).
    """
    def strip(node):
        if isinstance(node, dict):
            return {k: (None if k == 'pretrained' else strip(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    out = copy.copy(cfg)
    out.dic = dict(cfg.dic)
    out.dic['model'] = strip(cfg.dic.get('model'))
    return out
