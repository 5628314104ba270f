"""The one door for weights: our own files and checkpoints of other projects (mmseg,
PaddleSeg, sssegmentation, RegSeg, timm).

Each model or backbone file owns its importers (timm's ``checkpoint_filter_fn`` pattern) and
registers them here::

    @register_importer('FastSCNN', 'mmseg')
    def mmseg_key(key, model):          # source key -> our key, or None to drop it on purpose
        return torch_key(key)

An importer is a renaming function, optionally with a ``value`` function for the tensors whose
layout differs (a transposed Linear weight, a reordered projection) and a ``detect`` predicate
that recognises the project's key names. Because a renaming is a function of the key, each
source tensor is used at most once; :func:`convert` raises when two source keys land on the
same parameter, when a kept key has no parameter, when a parameter is left unfilled or when a
shape differs. The keys an importer drops on purpose (BN counters, an ImageNet classifier,
auxiliary heads the model was built without) are listed on the result.

:func:`load_weights` is what ``pretrained:``, ``--model_path`` and ``tools/convert_weights.py``
go through: it resolves a weights-table name or a URL (``zoo.models.weights``), reads the file
(Paddle, or PyTorch when torch is installed), tells which project it comes from
(:func:`detect_source`), converts and loads.
"""
import numpy as np

from zoo.models.weights import lookup_weights
from zoo.utils.atomic import atomic_save
from zoo.utils.checkpoint import check_keys, read_state_dict, require_finite
from zoo.utils.errors import CheckpointError
from zoo.utils.logger import logger
from zoo.utils.registry import BACKBONES

# the projects we import from, and the framework their files are written with
SOURCES = {'paddleseg': 'paddle', 'mmseg': 'torch', 'sssegmentation': 'torch', 'regseg': 'torch', 'timm': 'torch'}
OURS = 'ours'
_IMPORTERS = {}


class Importer:
    """``key(source_key, model) -> our key | None``; ``value(our_key, array, model) -> array``;
    ``detect(state_dict) -> bool`` (default: PyTorch BN names for a PyTorch project)."""

    def __init__(self, model_type, source, key, value=None, detect=None):
        self.model_type = model_type
        self.source = source
        self.key = key
        self.value = value
        self.detect = detect or (is_torch_state_dict if SOURCES[source] == 'torch' else None)
        if self.detect is None:
            raise ValueError(f'importer {model_type}/{source}: a Paddle-format source needs a detect predicate')


def register_importer(model_type, source, value=None, detect=None):
    """Decorator registering a key-renaming function as ``model_type``'s importer from ``source``."""
    if source not in SOURCES:
        raise ValueError(f'unknown checkpoint source {source!r}')

    def deco(fn):
        _IMPORTERS[(model_type, source)] = Importer(model_type, source, fn, value, detect)
        return fn

    return deco


def importers_of(model):
    """{source: Importer} registered for ``model``'s class."""
    name = type(model).__name__
    return {s: imp for (m, s), imp in _IMPORTERS.items() if m == name}


def get_importer(model, source):
    found = importers_of(model)
    if source not in found:
        name = type(model).__name__
        raise CheckpointError(f'no importer for {name} from {source!r}'
                              + (f' (available: {", ".join(sorted(found))})' if found else ''))
    return found[source]


# -- names ---------------------------------------------------------------------------

def is_torch_state_dict(state_dict):
    """A state dict saved by PyTorch (whatever the file format): its BN layers carry
    ``running_mean`` where Paddle's carry ``_mean``."""
    return any(k.endswith('.running_mean') for k in state_dict)


def torch_key(key, model=None):
    """PyTorch BN statistics in Paddle's names (``_mean``/``_variance``); the BN batch
    counter ``num_batches_tracked`` has no counterpart (None). Other keys are unchanged."""
    if key.endswith('num_batches_tracked'):
        return None
    if key.endswith('.running_mean'):
        return key[:-len('running_mean')] + '_mean'
    if key.endswith('.running_var'):
        return key[:-len('running_var')] + '_variance'
    return key


def to_numpy(state_dict):
    return {k: (v.numpy() if hasattr(v, 'numpy') else np.asarray(v)) for k, v in state_dict.items()}


def detect_source(model, state_dict):
    """Which registered importer of ``model`` recognises ``state_dict``; ``'ours'`` when none does."""
    found = sorted(s for s, imp in importers_of(model).items() if imp.detect(state_dict))
    if len(found) > 1:
        raise CheckpointError(f'{type(model).__name__}: the checkpoint looks like {" or ".join(found)}; '
                              'convert it with tools/convert_weights.py --from SOURCE')
    if found:
        return found[0]
    if is_torch_state_dict(state_dict):
        have = sorted(importers_of(model))
        raise CheckpointError(f'{type(model).__name__}: a PyTorch checkpoint but no importer recognises it'
                              + (f' (importers: {", ".join(have)})' if have else ' (this model has no importer)'))
    return OURS


# -- the proof -----------------------------------------------------------------------

class Converted(dict):
    """A state dict in our names; ``dropped``: the source keys left out on purpose; after a
    non-strict :func:`load_weights`, ``missing`` / ``unexpected``: what did not fit."""
    dropped = ()
    missing = ()
    unexpected = ()


def check_mapping(converted, model, strict=True, what='checkpoint'):
    """Raise (or, not ``strict``, warn) unless ``converted`` fills ``model`` exactly: every
    parameter and buffer present, no key without a parameter, every shape equal (the wording of
    ``zoo.utils.checkpoint.load_state_dict_checked``)."""
    check_keys(converted, model.state_dict(), what, strict, show=6)


def _training_only_absent(model):
    """Key prefixes of training-only parts (auxiliary heads) that ``model`` was built without:
    a checkpoint's tensors there are dropped, not reported."""
    own = model.state_dict()
    return tuple(p for p in getattr(model, 'training_only', ()) if not any(k.startswith(p) for k in own))


def backbone_part(model, state_dict):
    """A whole-segmentor checkpoint loaded into a backbone: keep its ``backbone.`` (or
    sssegmentation's ``backbone_net.``) tensors, without the prefix."""
    if type(model).__name__ not in BACKBONES:
        return state_dict
    for prefix in ('backbone_net.', 'backbone.'):
        if any(k.startswith(prefix) for k in state_dict):
            return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    return state_dict


def rename(model, source, state_dict, ignore_source=(), what='checkpoint'):
    """``state_dict`` (numpy values) from ``source`` (or ``'ours'``) in ``model``'s names and
    dtypes, unchecked; ``ignore_source``: source key prefixes dropped on purpose."""
    importer = None if source == OURS else get_importer(model, source)
    drop_prefixes = _training_only_absent(model)
    own = model.state_dict()
    out, origin, dropped = Converted(), {}, []
    for k, v in state_dict.items():
        new = None if k.startswith(tuple(ignore_source)) else k if importer is None else importer.key(k, model)
        if new is None or new.startswith(drop_prefixes):
            dropped.append(k)
            continue
        if new in origin:
            raise CheckpointError(f'{what}: {origin[new]!r} and {k!r} both map onto {new!r}')
        origin[new] = k
        v = np.asarray(v)
        if importer is not None and importer.value is not None:
            v = np.asarray(importer.value(new, v, model))
        if new in own:  # checkpoint floats may be float64/float16
            v = v.astype(str(own[new].dtype).replace('paddle.', ''))
        out[new] = v
    out.dropped = dropped
    return out


def convert(model, source, state_dict, ignore_source=(), what='checkpoint'):
    """:func:`rename`, then :func:`check_mapping` strictly: the result fills ``model`` exactly."""
    out = rename(model, source, state_dict, ignore_source, what)
    check_mapping(out, model, True, what)
    return out


# -- the door ------------------------------------------------------------------------

def read_weights(model, spec, what='pretrained', source=None):
    """``(state dict of numpy arrays, source)`` of ``spec`` (a weights-table name, a URL or a
    path) for ``model``; ``source`` given: no detection. Nothing is converted yet."""
    entry = lookup_weights(spec)
    if entry is not None and entry.model != type(model).__name__:
        raise CheckpointError(f'{what} {spec!r}: weights for {entry.model}, not {type(model).__name__}')
    sd = read_state_dict(entry.url if entry is not None else spec, f'{what} weights',
                         sha256=entry.sha256 if entry is not None else None)  # downloads are verified
    sd = backbone_part(model, to_numpy(sd))
    if source is None:
        source = entry.source if entry is not None else detect_source(model, sd)
    return sd, source


def load_weights(model, spec, strict=True, what='pretrained', keep_mismatched=()):
    """Load ``spec`` (a weights-table name, a URL or a path) into ``model``; returns the
    converted state dict (a :class:`Converted`).

    The weights table gives the file's source (and checksum); otherwise the source is detected
    from the key names. Not ``strict`` (ImageNet backbones): keys that do not fit are logged
    and skipped. ``keep_mismatched``: parameter prefixes whose checkpoint tensors are skipped,
    keeping the model's own initialisation, when their shapes differ (RegSeg fine-tunes CamVid
    from Cityscapes with another classifier).
    """
    sd, source = read_weights(model, spec, what)
    where = f'{what} {spec}'
    converted = rename(model, source, sd, what=where)
    own = model.state_dict()
    kept = [k for k in own if k.startswith(tuple(keep_mismatched))
            and k in converted and tuple(converted[k].shape) != tuple(own[k].shape)]
    if kept:
        logger.info(f'{where}: {", ".join(kept)} has another shape here, kept freshly initialised')
    check_mapping({**converted, **{k: own[k].numpy() for k in kept}}, model, strict, where)
    require_finite({k: v for k, v in converted.items() if k in own}, where)
    converted.missing = [k for k in own if k not in converted]
    converted.unexpected = [k for k in converted if k not in own]
    model.set_state_dict({k: v for k, v in converted.items() if k in own and k not in kept})
    logger.info(f'loaded {what} weights {spec} ({source}, {len(converted) - len(kept)} tensors)')
    return converted


def convert_checkpoint(model, spec, output, source=None, ignore_source=()):
    """Convert ``spec`` into ``model``'s names, strictly, and write ``output`` atomically
    (``tools/convert_weights.py``); returns what was done."""
    import paddle
    sd, source = read_weights(model, spec, 'checkpoint', source)
    require_finite(sd, spec)
    out = convert(model, source, sd, ignore_source, what=f'{source} checkpoint {spec}')
    atomic_save({k: paddle.to_tensor(v) for k, v in out.items()}, output)
    return {'model': type(model).__name__, 'source': source, 'source_tensors': len(sd),
            'ignored': [k for k in out.dropped if k.startswith(tuple(ignore_source))] if ignore_source else [],
            'dropped': list(out.dropped), 'converted_tensors': len(out),
            'values': int(sum(v.size for v in out.values())), 'output': output}
