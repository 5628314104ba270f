"""Training-step parity with the reference implementations (docs/weights.md, "Training recipe parity").

Each ``tests/manifests/train_step_<family>.json`` was written by ``tools/parity/train_step_manifest.py``
from the reference's own run (mmsegmentation 1.2.2, sssegmentation 1.7.0, the official RegSeg code,
PaddleSeg 2.8) in float64: three optimizer steps with the config's loss, optimizer, weight decay and
schedule, from weights drawn per reference tensor name, on a seeded batch with seeded dropout
masks. Here OUR side runs again (our importer on those weights, our config's model, loss,
optimizer and schedule; ``tools/parity/train_step_ours.py``) and must give the stored per-step
losses, every parameter, buffer, parameter change and momentum buffer after the last step, and the
reference scheduler's lr at every iteration of the run.

The reference side models the float32 scalars Paddle's kernels apply (SGD momentum and L2
coefficient, BatchNorm momentum and epsilon; PyTorch applies float32 values in float32 training
too) and keeps the BN running variance by Paddle's rule (biased batch variance); the gaps these
named differences make are recorded in each manifest's ``measured`` and in docs/weights.md.
"""
import glob
import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tools', 'parity'))

import train_step_ours as ours  # noqa: E402
from train_step_common import (GROUPS, LOSS_TOL, TENSOR_TOL, relative_difference, schedule_difference,  # noqa: E402
                               tensor_kind)

MANIFESTS = {os.path.basename(p)[len('train_step_'):-len('.json')]: p
             for p in sorted(glob.glob(os.path.join(ROOT, 'tests', 'manifests', 'train_step_*.json')))}
LR_TOL = 1e-12


def _manifest(family):
    with open(MANIFESTS[family]) as f:
        return json.load(f)


def test_every_seed_family_has_a_manifest():
    assert sorted(MANIFESTS) == sorted(['fast_scnn', 'dmnet', 'deeplabv3', 'mcibi', 'regseg', 'deeplabv3_paddleseg'])


@pytest.mark.parametrize('family', sorted(MANIFESTS))
def test_three_training_steps_match_the_reference(family):
    m = _manifest(family)
    # LOSS_TOL / TENSOR_TOL unless the manifest names a wider one with its measured cause
    tol = m.get('tolerance', {})
    run = ours.run(m['ours'], m['reference_shapes'])
    ref = m['reference']
    # the same dropout calls (step, shape, rank among its shape, rate, channel-wise) in the same order
    assert [list(c) for c in run['dropout_calls']] == [list(c) for c in m['reference_dropout_calls']]
    assert len(run['lrs']) == len(ref['lrs']) == m['ours']['steps']
    for a, b in zip(run['lrs'], ref['lrs']):
        assert abs(a - b) <= LR_TOL
    loss_diff = [abs(a - b) / abs(b) for a, b in zip(run['losses'], ref['losses'])]
    assert max(loss_diff) <= tol.get('loss', LOSS_TOL), (loss_diff, run['loss_parts'], ref['loss_parts'])
    failures = []
    mine = run['evidence']
    for group in GROUPS:
        want = m['evidence'][group]
        assert want and set(want) == set(mine[group]), group  # every tensor of the model is checked
        for name, r in want.items():
            d = relative_difference(mine[group][name], r)
            kind = tensor_kind(group, name, mine['velocity'])
            if not d <= tol.get('tensor', {}).get(kind, TENSOR_TOL):
                failures.append((group, name, d))
    assert not failures, sorted(failures, key=lambda f: -f[2])[:10]


@pytest.mark.parametrize('family', sorted(MANIFESTS))
def test_whole_lr_schedule_matches_the_reference_scheduler(family):
    """Every iteration of the config's run (sampled values plus sum and projection of all of them)
    against the reference scheduler's own values."""
    m = _manifest(family)
    values = ours.schedule(m['ours']['config'], m['ours']['opts'])
    assert len(values) == m['schedule']['n'] == m['reference']['iters']
    assert schedule_difference(values, m['schedule']) <= LR_TOL
