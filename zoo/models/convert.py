"""Checkpoint import from other projects (mmseg, PaddleSeg, sssegmentation, RegSeg).

Each model file owns its importers (timm's ``checkpoint_filter_fn`` pattern) and registers
them here with ``@register_importer('FastSCNN', 'mmseg')``. An importer takes the source
state dict (``{name: numpy array}``) and the target model and returns a state dict in the
model's names. :func:`convert` then proves the mapping: every source key used exactly once,
every target parameter/buffer filled, every shape equal; anything else raises.
"""
import numpy as np

from ..utils.errors import CheckpointError

SOURCES = ('paddleseg', 'mmseg', 'sssegmentation', 'regseg')
_IMPORTERS = {}


def register_importer(model_type, source):
    if source not in SOURCES:
        raise ValueError(f'unknown checkpoint source {source!r}')

    def deco(fn):
        _IMPORTERS[(model_type, source)] = fn
        return fn

    return deco


def get_importer(model, source):
    name = type(model).__name__
    fn = _IMPORTERS.get((name, source))
    if fn is None:
        have = sorted(s for (m, s) in _IMPORTERS if m == name)
        raise CheckpointError(f'no importer for {name} from {source!r}'
                              + (f' (available: {", ".join(have)})' if have else ''))
    return fn


# -- renaming helpers shared by importers -------------------------------------------

TORCH_BN_RENAMES = (('.running_mean', '._mean'), ('.running_var', '._variance'))


def torch_to_paddle_names(sd, drop_suffixes=('num_batches_tracked',)):
    """BN statistics renamed to Paddle's (``_mean``/``_variance``); bookkeeping keys dropped."""
    out = {}
    for k, v in sd.items():
        if k.endswith(drop_suffixes):
            continue
        for a, b in TORCH_BN_RENAMES:
            if k.endswith(a):
                k = k[: -len(a)] + b
        out[k] = v
    return out


def transpose_linear(sd, model):
    """torch Linear weights are [out, in]; Paddle's are [in, out]."""
    import paddle.nn as nn
    linear_weights = {f'{n}.weight' for n, m in model.named_sublayers() if isinstance(m, nn.Linear)}
    return {k: (np.ascontiguousarray(np.asarray(v).T) if k in linear_weights else v) for k, v in sd.items()}


def strip_prefix(sd, prefix):
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}


def rename_keys(sd, rules):
    """Apply ``[(old_substring, new_substring), ...]`` to every key, in order."""
    out = {}
    for k, v in sd.items():
        for a, b in rules:
            k = k.replace(a, b)
        out[k] = v
    return out


# -- the proof -----------------------------------------------------------------------

def check_mapping(converted, model, source_keys=None, used_source_keys=None):
    """Raise unless ``converted`` fills ``model`` exactly (names and shapes)."""
    own = model.state_dict()
    missing = [k for k in own if k not in converted]
    extra = [k for k in converted if k not in own]
    shapes = [f'{k}: {list(np.shape(converted[k]))} vs {list(own[k].shape)}'
              for k in own if k in converted and tuple(np.shape(converted[k])) != tuple(own[k].shape)]
    unused = []
    if source_keys is not None and used_source_keys is not None:
        unused = sorted(set(source_keys) - set(used_source_keys))
    problems = []
    if missing:
        problems.append(f'{len(missing)} model parameter(s) not filled: {", ".join(missing[:6])}')
    if extra:
        problems.append(f'{len(extra)} converted key(s) with no model parameter: {", ".join(extra[:6])}')
    if shapes:
        problems.append(f'{len(shapes)} shape mismatch(es): {"; ".join(shapes[:4])}')
    if unused:
        problems.append(f'{len(unused)} source key(s) not used: {", ".join(unused[:6])}')
    if problems:
        raise CheckpointError('checkpoint does not fit the model: ' + ' | '.join(problems))


def convert(model, source, state_dict, ignore_source=()):
    """Convert ``state_dict`` (numpy values) from ``source`` into ``model``'s names, strictly.

    ``ignore_source``: source key prefixes that are legitimately dropped (e.g. an ImageNet
    classifier ``fc.``); everything else must be used.
    """
    fn = get_importer(model, source)
    src = {k: v for k, v in state_dict.items() if not k.startswith(tuple(ignore_source))}
    converted = fn(src, model)
    own = model.state_dict()
    # cast to the model's dtypes (checkpoint floats may be float64/float16)
    out = {}
    for k, v in converted.items():
        v = np.asarray(v)
        if k in own:
            v = v.astype(str(own[k].dtype).replace('paddle.', ''))
        out[k] = v
    check_mapping(out, model)
    return out
