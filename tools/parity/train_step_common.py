"""The training-step parity protocol, shared by the reference side (torch environments) and ours.

numpy only, so that every scratch environment can import it. Both sides of one family:

1. start from the same weights: every tensor of the REFERENCE state dict is drawn from a seed made
   of its reference name (:func:`reference_weights`); our side converts that dict with our
   importer, as a user's checkpoint would be;
2. take the same batch (:func:`make_batch`: a normalized image, labels with ignored pixels);
3. replace every dropout by the same masks (:func:`dropout_mask`, keyed by step, mask shape and
   the call's rank among calls of that shape): both sides draw the mask from the layer's own
   ``p`` and mode (channel-wise or element-wise), so a different rate or mode still shows;
4. run ``STEPS`` optimizer steps from iteration ``start_iter`` with the config's loss, optimizer,
   weight decay and schedule, in float64;
5. summarise every parameter, buffer and optimizer buffer after the last step with
   :func:`evidence` (sum, L2 norm, projection on a seeded unit vector, seeded samples), compared
   by :func:`relative_difference`.

The reference scripts (``tools/parity/train_step_<reference>.py``) store the reference's
after-step state in ``/work/scratch``; ``tools/parity/train_step_manifest.py`` converts it with
our importer and writes ``tests/manifests/train_step_<family>.json``.
"""
import datetime
import json
import os
import platform
import sys
import zlib

import numpy as np

STEPS = int(os.environ.get("TRAIN_STEP_STEPS", 3))  # fewer for debugging a family
OUT_ROOT = os.environ.get('TRAIN_STEP_OUT', '/work/scratch/trainparity/out')   # reference runs
LOSS_TOL = 1e-9       # per-step relative loss difference
TENSOR_TOL = 1e-7     # relative difference of every tensor after the last step
GROUPS = ('state', 'update', 'velocity')
BATCH_SHAPE = (2, 3, 64, 64)
IGNORE_INDEX = 255
N_SAMPLES = 8


def _rng(*key):
    """A numpy generator seeded by strings/ints (stable across processes and platforms)."""
    text = '/'.join(str(k) for k in key)
    return np.random.default_rng(zlib.crc32(text.encode()))


def reference_weights(shapes, seed=0):
    """Deterministic float64 weights for a reference state dict ``{name: shape}``.

    Conv/linear weights: He-normal over the fan-in (so deep nets keep their scale);
    1-D ``weight`` (norm layers): 1 + 0.1 N; biases and ``running_mean`` (Paddle: ``_mean``): 0.1 N;
    ``running_var`` (``_variance``): U(0.5, 1.5); ``num_batches_tracked``: 0 (int64); a ``memory`` (MCIBI's
    ``[classes, slots, channels]``): N(0, 1) with every third class zero (not seen yet, so the
    update initialises it). Anything else: N(0, 1).
    """
    out = {}
    for name, shape in shapes.items():
        shape = tuple(int(s) for s in shape)
        g = _rng('weights', seed, name)
        leaf = name.rsplit('.', 1)[-1]
        if leaf == 'num_batches_tracked':
            out[name] = np.zeros(shape, np.int64)
        elif leaf in ('running_var', '_variance'):      # PyTorch / Paddle names
            out[name] = g.uniform(0.5, 1.5, shape)
        elif leaf in ('running_mean', '_mean', 'bias'):
            out[name] = 0.1 * g.standard_normal(shape)
        elif leaf == 'weight' and len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            out[name] = g.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        elif leaf == 'weight':
            out[name] = 1.0 + 0.1 * g.standard_normal(shape)
        elif leaf == 'memory':
            out[name] = g.standard_normal(shape)
            out[name][::3] = 0.0
        else:
            out[name] = g.standard_normal(shape)
    return out


def make_batch(num_classes, seed=0, shape=BATCH_SHAPE, ignore_fraction=0.1):
    """``(image float64 NCHW, label int64 NHW)``: a normalized image and labels made of random
    rectangles over a random background, ``ignore_fraction`` of the pixels ignored (255).

    Each image has its own per-channel offset and a coarse random pattern under pixel noise, so
    images differ globally as photographs do: with plain i.i.d. noise every image pools to nearly
    the same vector, the image-pool BatchNorm of ASPP heads then normalises values whose batch
    variance is below its epsilon, and the comparison measures that layer's conditioning instead
    of the recipe."""
    g = _rng('batch', seed)
    n, c, h, w = shape
    offset = g.standard_normal((n, c, 1, 1))
    coarse = g.standard_normal((n, c, 4, 4)).repeat(-(-h // 4), axis=2).repeat(-(-w // 4), axis=3)[:, :, :h, :w]
    img = offset + coarse + 0.5 * g.standard_normal(shape)
    label = g.integers(0, num_classes, (n, h, w))
    for i in range(n):
        for _ in range(12):
            y0, x0 = g.integers(0, h - 4), g.integers(0, w - 4)
            label[i, y0:y0 + g.integers(4, h // 2), x0:x0 + g.integers(4, w // 2)] = g.integers(0, num_classes)
    label[g.random((n, h, w)) < ignore_fraction] = IGNORE_INDEX
    return img, label.astype(np.int64)


def dropout_mask(step, shape, rank, p, channelwise):
    """The scaled keep mask (``keep / (1 - p)``) of the ``rank``-th dropout call of ``shape`` at
    ``step``; channel-wise masks have shape ``[N, C, 1, 1]``."""
    shape = tuple(int(s) for s in shape)
    mshape = shape[:2] + (1,) * (len(shape) - 2) if channelwise else shape
    u = _rng('dropout', step, shape, rank, 'channel' if channelwise else 'element').random(mshape)
    return (u >= p).astype(np.float64) / (1.0 - p)


class DropoutMasks:
    """Counts the dropout calls of one step and hands out their masks."""

    def __init__(self):
        self.step = 0
        self.counts = {}
        self.log = []

    def start_step(self, step):
        self.step = step
        self.counts = {}

    def mask(self, shape, p, channelwise):
        shape = tuple(int(s) for s in shape)
        rank = self.counts.get(shape, 0)
        self.counts[shape] = rank + 1
        self.log.append((self.step, list(shape), rank, float(p), bool(channelwise)))
        return dropout_mask(self.step, shape, rank, p, channelwise)


def evidence(name, array):
    """Compact but complete evidence of one tensor: its size, sum, L2 norm, projection on a unit
    vector drawn from its name, and ``N_SAMPLES`` elements at indices drawn from its name."""
    a = np.asarray(array, dtype=np.float64).ravel()
    n = a.size
    g = _rng('evidence', name, n)
    v = g.standard_normal(n)
    v /= np.linalg.norm(v) if n else 1.0
    idx = g.choice(n, size=min(N_SAMPLES, n), replace=False) if n else np.zeros(0, np.int64)
    return {'n': int(n), 'sum': float(a.sum()), 'l2': float(np.linalg.norm(a)), 'dot': float(a @ v),
            'samples': [float(x) for x in a[idx]]}


def relative_difference(ours, ref):
    """Difference of two evidences relative to the reference tensor's RMS value: the largest of
    |d sample| / rms, |d projection| / rms, |d mean| / rms and |d L2| / L2 (each estimates
    ||ours - ref|| / ||ref|| of the whole tensor). 0 when both tensors are all zeros."""
    if ours['n'] != ref['n']:
        return float('inf')
    n = max(ref['n'], 1)
    rms = ref['l2'] / np.sqrt(n)
    diffs = [abs(a - b) for a, b in zip(ours['samples'], ref['samples'])]
    diffs += [abs(ours['dot'] - ref['dot']), abs(ours['sum'] - ref['sum']) / n, abs(ours['l2'] - ref['l2'])]
    worst = max(diffs) if diffs else 0.0
    if rms == 0.0:
        return 0.0 if worst == 0.0 else float('inf')
    return float(worst / rms)


def schedule_evidence(values, sample_every=997):
    """The reference schedule as stored in a manifest: its length, every ``sample_every``-th value
    plus the first and last 64 (iteration -> lr), and the sum and a seeded projection of all."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    idx = sorted(set(range(0, n, sample_every)) | set(range(min(64, n))) | set(range(max(n - 64, 0), n)))
    v = _rng('schedule', n).standard_normal(n)
    return {'n': int(n), 'sum': float(values.sum()), 'dot': float(values @ v),
            'samples': {str(i): float(values[i]) for i in idx}}


def schedule_difference(values, ref):
    """Largest absolute difference of a schedule to a stored :func:`schedule_evidence` (samples,
    and the sum/projection over all iterations divided by the length)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size != ref['n']:
        return float('inf')
    mine = schedule_evidence(values)
    d = [abs(values[int(i)] - x) for i, x in ref['samples'].items()]
    d += [abs(mine['sum'] - ref['sum']) / ref['n'], abs(mine['dot'] - ref['dot']) / np.sqrt(ref['n'])]
    return float(max(d))


def tensor_kind(group, name, trainable):
    """The kind a tensor's difference is reported under: parameter, bn_stats, buffer (e.g. a
    memory) or momentum, with ``_update`` for the change over the steps."""
    if group == 'velocity':
        return 'momentum'
    kind = 'bn_stats' if name.endswith(('_mean', '_variance')) else 'parameter' if name in trainable else 'buffer'
    return f'{kind}_update' if group == 'update' else kind


def compare(ref, ev, run):
    """A run (``losses``, ``lrs``, ``evidence`` per group) against a reference's losses, lrs and
    evidence: per-step loss relative differences and lr differences, and per tensor kind the worst
    relative difference and its tensor."""
    loss = [abs(a - b) / abs(b) for a, b in zip(run['losses'], ref['losses'])]
    lr = [abs(a - b) for a, b in zip(run['lrs'], ref['lrs'])]
    mine = run['evidence']
    worst = {}
    for group in GROUPS:
        for name, r in ev[group].items():
            if name in mine[group]:
                kind = tensor_kind(group, name, mine['velocity'])
                d = relative_difference(mine[group][name], r)
            else:
                kind, d = 'missing', float('inf')
            if kind not in worst or not d <= worst[kind][0]:
                worst[kind] = (d, name)
    return {'loss_rel_diff': loss, 'lr_abs_diff': lr,
            'worst_rel_diff': {k: {'value': v[0], 'tensor': v[1]} for k, v in sorted(worst.items())}}


def replace_type(node, old, new):
    """``type: old`` -> ``type: new`` everywhere in a nested config (SyncBN -> BN for one process)."""
    if isinstance(node, dict):
        if node.get('type') == old:
            node['type'] = new
        for v in node.values():
            replace_type(v, old, new)
    elif isinstance(node, (list, tuple)):
        for v in node:
            replace_type(v, old, new)


def save_run(family, variant, *, state, momentum, record, schedule, dropout_calls, biased_var=None, versions=None):
    """Write one reference run for ``train_step_manifest.py``: ``<OUT_ROOT>/<family>/<variant>/``
    ``after.npz`` (``state/``, ``momentum/``, ``biased_var/`` arrays in reference names),
    ``schedule.npy`` (the reference scheduler's lr at every iteration of the run) and
    ``record.json`` (losses, lrs, dropout calls, provenance)."""
    out = os.path.join(OUT_ROOT, family, variant)
    os.makedirs(out, exist_ok=True)
    arrays = {f'state/{k}': np.asarray(v) for k, v in state.items()}
    arrays.update({f'momentum/{k}': v for k, v in momentum.items()})
    arrays.update({f'biased_var/{k}': v for k, v in (biased_var or {}).items()})
    np.savez(os.path.join(out, 'after.npz'), **arrays)
    np.save(os.path.join(out, 'schedule.npy'), np.asarray(schedule, dtype=np.float64))
    record = dict(record, variant=variant, dropout_calls=dropout_calls)
    record['produced'] = {'by': ' '.join([os.path.relpath(sys.argv[0])] + sys.argv[1:]), 'python': sys.executable,
                          'numpy': np.__version__, **(versions or {}), 'platform': platform.platform(),
                          'date': datetime.date.today().isoformat()}
    with open(os.path.join(out, 'record.json'), 'w') as f:
        json.dump(record, f, indent=1)
    print(f'wrote {out}: losses {record["losses"]}')
