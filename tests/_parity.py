"""Recorded parity, re-run: our model on a reference script's stored input, compared with the
reference's stored output (``tests/manifests/seeded.py`` describes the files).

The weights are regenerated from the reference's own tensor names (stored in the file's
meta), go through our importer (``zoo.models.convert.convert``, strict) and the model runs
in float64, as the reference did, so the tolerance is tight: 1e-9 of the output's magnitude
(float32 rounding would show at ~1e-6).
"""
import os
import sys

import numpy as np
import paddle

from zoo.models.convert import check_mapping, convert, torch_key

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, 'manifests'))
from seeded import compare, fingerprint, load_outputs, seeded_state_dict  # noqa: E402

TOLERANCE = 1e-9


def stored(name):
    """(inputs, stored outputs, meta) of ``tests/manifests/<name>.npz``."""
    return load_outputs(os.path.join(HERE, 'manifests', name + '.npz'))


def float64_model(build, *args, **kwargs):
    """``build(*args, **kwargs)`` with float64 parameters, created lazily: their values come from
    :func:`load_reference_weights` (skipping Paddle's initialisers saves seconds per R-50)."""
    default = paddle.get_default_dtype()
    paddle.set_default_dtype('float64')
    try:
        with paddle.LazyGuard():
            return build(*args, **kwargs)
    finally:
        paddle.set_default_dtype(default)


def reference_weights(meta, key='model'):
    """The seeded weights of ``meta['weights'][key]``, checked against the reference run's."""
    entry = meta['weights'][key]
    sd = seeded_state_dict(entry['shapes'], entry.get('seed', 0))
    assert fingerprint(sd) == entry['fingerprint'], f'{key}: seeded weights differ from the reference run\'s'
    return sd


def load_reference_weights(model, meta, source, key='model', state_dict=None):
    """``model`` (float64, see :func:`float64_model`) with the seeded weights of the reference's tensors
    ``meta['weights'][key]`` (names and shapes), imported with our ``source`` importer (None: a
    part without one, e.g. a head, whose names are the reference's up to BN statistics); eval mode.
    ``state_dict``: those weights already generated (:func:`reference_weights`)."""
    sd = reference_weights(meta, key) if state_dict is None else state_dict
    if source is None:
        sd = {torch_key(k): v for k, v in sd.items() if torch_key(k) is not None}
        check_mapping(sd, model)
    else:
        sd = convert(model, source, sd)
    model.set_state_dict(sd)
    model.eval()
    return model


def to_tensor(x):
    return paddle.to_tensor(np.asarray(x, 'float64'))


def assert_outputs(outputs, ours, tolerance=TOLERANCE):
    """Every stored output matches ours; returns {name: relative max difference}."""
    assert sorted(ours) == sorted(outputs), (sorted(ours), sorted(outputs))
    diffs = {}
    for name, ref in outputs.items():
        rel, scale = compare(ref, ours[name].numpy() if hasattr(ours[name], 'numpy') else ours[name])
        assert rel <= tolerance, f'{name}: max |ours - reference| = {rel:.3g} of |reference| max {scale:.3g}'
        diffs[name] = rel
    return diffs
