"""Weights, inputs and stored outputs shared by the reference scripts and the tests.

A reference script (run in a scratch environment with torch, see PLATFORM.md) fills the
reference model with :func:`seeded_state_dict` of its own state-dict names, runs it in
float64 on :func:`seeded_input` and writes :func:`save_outputs` next to its JSON manifest.
The test regenerates the same weights from the same names (numpy only, no stored tensors),
imports them with our importer, runs our model on the stored input and compares with
:func:`check_outputs`. The values depend only on (seed, tensor name, shape): numpy's legacy
``RandomState``, whose streams numpy keeps stable across versions.

Weights are He-scaled (conv/linear std sqrt(2 / fan_in)), norm scales and running variances
in (0.8, 1.2), shifts and running means in (-0.1, 0.1), so activations stay finite without a BN
calibration pass; outputs may grow through deep residual stacks, which float64 absorbs.

Large outputs are stored at ``samples`` random positions plus their per-channel sums (every
element counts in those); small ones in full. Only numpy here: the file is imported by the
torch-side scripts too.
"""
import json
import zlib

import numpy as np

SAMPLES = 2048
INPUT_STEP = 64  # inputs are multiples of 1/64 in [-2, 2): exact in any float type, stored as int8


def _rng(name, seed):
    return np.random.RandomState((zlib.crc32(name.encode()) + 7919 * seed) % (2 ** 32))


def seeded_array(name, shape, seed=0):
    """float64 values for one tensor (reference naming: torch BN ``running_mean``/``running_var``
    or Paddle's ``_mean``/``_variance`` give the same values). Drawn as int8 codes (15x faster
    than normal variates: an R-50 in a second), spread uniformly over (-1, 1) then scaled."""
    shape = tuple(int(s) for s in shape)
    key = name.replace('._mean', '.running_mean').replace('._variance', '.running_var')
    if key.endswith('num_batches_tracked'):
        return np.zeros(shape, 'int64')
    u = (_rng(key, seed).randint(-128, 128, shape, dtype=np.int8).astype('float64') + 0.5) / 128  # std ~ 1/sqrt(3)
    if key.endswith('running_var'):
        return 1.0 + 0.2 * u
    if key.endswith('running_mean'):
        return 0.1 * u
    if len(shape) <= 1:
        return 1.0 + 0.2 * u if key.endswith('weight') else 0.1 * u
    fan_in = int(np.prod(shape[1:]))  # torch layout [out, in, ...]
    return u * np.sqrt(6.0 / fan_in)  # He: std sqrt(2 / fan_in)


def seeded_state_dict(shapes, seed=0):
    """{name: float64 array} for {name: shape} in the reference's names."""
    return {k: seeded_array(k, s, seed) for k, s in shapes.items()}


def fingerprint(state_dict):
    """A number that changes with any generated value (regeneration is checked before use)."""
    return float(sum(float(np.asarray(v, 'float64').sum()) for v in state_dict.values()))


def fill_torch_model(model, seed=0):
    """Reference side: ``model`` (a torch module) in float64 with the seeded weights of its own
    state-dict names; returns the ``meta['weights']`` entry the test regenerates them from."""
    import torch
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    sd = seeded_state_dict(shapes, seed)
    model.double()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    return {'shapes': shapes, 'seed': seed, 'fingerprint': fingerprint(sd)}


def fill_paddle_model(model, seed=0):
    """As :func:`fill_torch_model` for a Paddle reference (PaddleSeg); build it with
    ``paddle.set_default_dtype('float64')`` first."""
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    sd = seeded_state_dict(shapes, seed)
    model.set_state_dict(sd)
    return {'shapes': shapes, 'seed': seed, 'fingerprint': fingerprint(sd)}


def seeded_input(shape, seed=0):
    """An image-like float64 input: multiples of 1/64 in [-2, 2) (as a normalised 8-bit image)."""
    return np.random.RandomState(seed).randint(-2 * INPUT_STEP, 2 * INPUT_STEP, shape) / INPUT_STEP


def save_outputs(path, inputs, outputs, meta, samples=SAMPLES, seed=0):
    """``inputs`` (of :func:`seeded_input`, stored as int8 codes) and ``outputs``: {name: array}.
    Outputs up to ``samples`` values are stored whole, larger ones as values at seeded positions
    + per-channel (axis 1) sums, all float64."""
    arrays = {}
    for name, x in inputs.items():
        codes = np.round(np.asarray(x, 'float64') * INPUT_STEP)
        if not ((codes >= -128) & (codes <= 127)).all() or not np.array_equal(codes / INPUT_STEP, x):
            raise ValueError(f'input {name}: not a seeded_input (multiples of 1/{INPUT_STEP} in [-2, 2))')
        arrays[f'in/{name}'] = codes.astype('int8')
    for name, y in outputs.items():
        y = np.asarray(y, 'float64')
        arrays[f'out/{name}/shape'] = np.array(y.shape, 'int64')
        if y.size <= samples:
            arrays[f'out/{name}/full'] = y
            continue
        idx = np.sort(np.random.RandomState(seed).choice(y.size, samples, replace=False)).astype('int64')
        arrays[f'out/{name}/index'] = idx
        arrays[f'out/{name}/values'] = y.reshape(-1)[idx]
        arrays[f'out/{name}/channel_sums'] = y.sum(axis=tuple(i for i in range(y.ndim) if i != 1))
    arrays['meta'] = np.array(json.dumps(meta))
    np.savez_compressed(path, **arrays)


def load_outputs(path):
    """(inputs, stored outputs, meta) of :func:`save_outputs`."""
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    meta = json.loads(str(data.pop('meta')))
    inputs = {k[3:]: v.astype('float64') / INPUT_STEP for k, v in data.items() if k.startswith('in/')}
    outputs = {}
    for k, v in data.items():
        if k.startswith('out/'):
            name, field = k[4:].rsplit('/', 1)
            outputs.setdefault(name, {})[field] = v
    return inputs, outputs, meta


def compare(stored, ours):
    """Max |ours - reference| over the stored values and over the channel sums (relative to the
    reference's largest magnitude), for one output."""
    ours = np.asarray(ours, 'float64')
    if tuple(ours.shape) != tuple(stored['shape']):
        raise AssertionError(f'shape {list(ours.shape)} vs the reference\'s {stored["shape"].tolist()}')
    if 'full' in stored:
        ref = stored['full']
        return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-300)), float(np.abs(ref).max())
    ref = stored['values']
    scale = max(float(np.abs(ref).max()), 1e-300)
    diff = float(np.abs(ours.reshape(-1)[stored['index']] - ref).max())
    sums = ours.sum(axis=tuple(i for i in range(ours.ndim) if i != 1))
    n = ours.size // ours.shape[1]
    diff = max(diff, float(np.abs(sums - stored['channel_sums']).max()) / n)
    return diff / scale, scale
