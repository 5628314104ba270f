"""Write ``tests/manifests/train_step_<family>.json`` from a reference run and record our figures.

    python tools/parity/train_step_manifest.py fast_scnn dmnet deeplabv3 mcibi regseg deeplabv3_paddleseg

Reads what the reference script left in ``/work/scratch/trainparity/out/<family>/`` (after-step
state, momentum buffers, biased-variance shadow of the BN statistics, per-step losses and lrs, the
reference scheduler's lr at every iteration), converts the state with OUR importer (the same door
as a user's checkpoint), stores compact evidence of every tensor, then runs our side
(``train_step_ours.py``) and records the measured differences (``measured``). The reference
scripts are ``train_step_mmseg.py`` (Fast-SCNN, DMNet, DeepLabV3 R-50-D8),
``train_step_sssegmentation.py`` (MCIBI), ``train_step_regseg.py`` (RegSeg) and
``train_step_paddleseg.py`` (DeepLabV3 ResNet50_vd); see docs/weights.md "Training recipe parity".
"""
import datetime
import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import train_step_ours as ours  # noqa: E402
from train_step_common import (evidence, reference_weights, relative_difference,  # noqa: E402
                               schedule_difference, schedule_evidence)

OUT_ROOT = os.environ.get('TRAIN_STEP_OUT', '/work/scratch/trainparity/out')
MANIFESTS = os.path.join(ROOT, 'tests', 'manifests')
NO_PRETRAINED = ['model.backbone.pretrained=null']

# our config for each family, and what makes it runnable offline (no ImageNet download)
FAMILIES = {
    'fast_scnn': dict(config='configs/fast_scnn/fast_scnn_cityscapes_512x1024_160k.yml', opts=[]),
    'dmnet': dict(config='configs/dmnet/dmnet_r50-d8_cityscapes_512x1024_80k.yml', opts=NO_PRETRAINED),
    'deeplabv3': dict(config='configs/deeplabv3/deeplabv3_r50-d8_cityscapes_512x1024_80k.yml', opts=NO_PRETRAINED),
    'mcibi': dict(config='configs/mcibi/mcibi_r50-d8_ade20k_512x512_130e.yml', opts=NO_PRETRAINED),
    'regseg': dict(config='configs/regseg/regseg_exp48_cityscapes_768x768_1000e.yml', opts=[]),
    'deeplabv3_paddleseg': dict(config='configs/deeplabv3/deeplabv3_resnet50-vd-os8_cityscapes_512x1024_80k.yml',
                                opts=NO_PRETRAINED),
}


def _load(family, variant):
    folder = os.path.join(OUT_ROOT, family, variant)
    with open(os.path.join(folder, 'record.json')) as f:
        record = json.load(f)
    z = np.load(os.path.join(folder, 'after.npz'))
    groups = {'state': {}, 'momentum': {}, 'biased_var': {}}
    for key in z.files:
        group, name = key.split('/', 1)
        groups[group][name] = z[key]
    return record, groups, np.load(os.path.join(folder, 'schedule.npy'))


def _converted_evidence(spec, groups):
    """Evidence of the reference's after-step state in our names, from conversions of it by our
    importer: as is (PyTorch's unbiased running variance), with the BN running variance kept by
    Paddle's rule (the biased shadow; what our BatchNorm must match), its change from the initial
    weights (``update``), and with every parameter replaced by its momentum buffer (``velocity``)."""
    import paddle
    previous = paddle.get_default_dtype()
    paddle.set_default_dtype('float64')
    try:
        _, model = ours.build(spec['config'], spec['opts'])
        state = groups['state']
        trainable = {n for n, p in model.named_parameters() if not p.stop_gradient}
        as_is = ours.import_reference(model, spec['source'], state)
        paddle_rule = ours.import_reference(model, spec['source'], {**state, **groups['biased_var']})
        init = reference_weights({k: v.shape for k, v in state.items()}, spec['weight_seed'])
        after = {**state, **groups['biased_var']}
        change = ours.import_reference(model, spec['source'], {
            k: (v - init[k] if np.issubdtype(v.dtype, np.floating) else v) for k, v in after.items()})
        momentum = ours.import_reference(model, spec['source'], {**state, **groups['momentum']})
    finally:
        paddle.set_default_dtype(previous)
    ev = {'state': {k: evidence(k, v) for k, v in paddle_rule.items()},
          'update': {k: evidence(k, v) for k, v in change.items()},
          'velocity': {k: evidence(k, v) for k, v in momentum.items() if k in trainable}}
    torch_var = {k: evidence(k, as_is[k]) for k in as_is
                 if k.endswith('_variance') and not np.array_equal(as_is[k], paddle_rule[k])}
    return ev, torch_var


def compare(ref, ev, run):
    """Our run against a reference record (losses, lrs) and its evidence: per-step loss relative
    differences, the worst relative difference of each group of tensors (parameters, BN
    statistics, other buffers, momentum buffers) with the tensor that has it, per-step lr differences."""
    loss = [abs(a - b) / abs(b) for a, b in zip(run['losses'], ref['losses'])]
    lr = [abs(a - b) for a, b in zip(run['lrs'], ref['lrs'])]
    groups = {}
    for group in ('state', 'update', 'velocity'):
        for name, r in ev[group].items():
            if name not in run[group]:
                kind = 'missing'
                d = float('inf')
            else:
                d = relative_difference(evidence(name, run[group][name]), r)
                kind = ('momentum' if group == 'velocity' else
                        'bn_stats' if name.endswith(('_mean', '_variance')) else
                        'parameter' if name in run['velocity'] else 'buffer')
                kind = f'{kind}_update' if group == 'update' else kind
            worst = groups.get(kind)
            if worst is None or d > worst[0]:
                groups[kind] = (d, name)
    return {'loss_rel_diff': loss, 'lr_abs_diff': lr,
            'worst_rel_diff': {k: {'value': v[0], 'tensor': v[1]} for k, v in sorted(groups.items())}}


def torch_variance_gap(manifest, run):
    """The measured effect of PyTorch's unbiased running variance: our BN variance against the
    reference's true one (the manifest keeps its evidence separately)."""
    worst = 0.0
    for name, r in manifest.get('torch_running_var', {}).items():
        worst = max(worst, relative_difference(evidence(name, run['state'][name]), r))
    return worst


def make(family):
    record, groups, schedule = _load(family, 'paddle_kernel')
    exact_record, exact_groups, _ = _load(family, 'exact')
    spec = dict(FAMILIES[family])
    spec.update(source=record['source'], num_classes=record['num_classes'], start_iter=record['start_iter'],
                steps=record['steps'], batch_seed=0, weight_seed=0, batch_shape=record['batch_shape'])
    ev, torch_var = _converted_evidence(spec, groups)
    exact_ev, _ = _converted_evidence(spec, exact_groups)
    ours_schedule = ours.schedule(spec['config'], spec['opts'])
    manifest = {
        'family': family,
        'what': 'training-step parity: reference vs ours, float64, same weights (ours via our importer), same '
                'batch and dropout masks, config loss/optimizer/schedule, evidence of every tensor after the '
                'last step (tools/parity/train_step_common.py)',
        'reference': {k: record[k] for k in ('reference', 'config', 'losses', 'loss_parts', 'lrs', 'optimizer',
                                             'iters') if k in record},
        'reference_extra': {k: v for k, v in record.items() if k.startswith('note')},
        'ours': spec,
        'reference_shapes': {k: list(v.shape) for k, v in groups['state'].items()},
        'evidence': ev,
        'torch_running_var': torch_var,
        # the reference with the config's momentum / weight decay as doubles (Paddle's momentum
        # kernel applies them as float32; so does PyTorch in float32 training)
        'exact_hyperparameters': {'losses': exact_record['losses'], 'lrs': exact_record['lrs'], 'evidence': exact_ev},
        'schedule': schedule_evidence(schedule),
        'produced': {'reference_run': record['produced'], 'manifest_by': 'tools/parity/train_step_manifest.py',
                     'date': datetime.date.today().isoformat(), 'platform': platform.platform()},
    }
    run = ours.run(spec, manifest['reference_shapes'])
    measured = compare(manifest['reference'], ev, run)
    measured['exact_hyperparameters'] = compare(exact_record, exact_ev, run)
    n = min(len(schedule), len(ours_schedule))
    measured['schedule'] = {
        'iterations': int(len(schedule)), 'ours_iterations': int(len(ours_schedule)),
        'max_abs_diff': float(np.abs(ours_schedule[:n] - schedule[:n]).max()),
        'max_rel_diff': float((np.abs(ours_schedule[:n] - schedule[:n]) / np.abs(schedule[:n]).clip(1e-300)).max()),
        'evidence_diff': schedule_difference(ours_schedule, manifest['schedule'])}
    measured['torch_unbiased_running_var_rel_diff'] = torch_variance_gap(manifest, run)
    measured['dropout_calls_equal'] = [list(c) for c in run['dropout_calls']] == [list(c) for c in
                                                                                  record['dropout_calls']]
    measured['loadavg'] = open('/proc/loadavg').read().split()[:3]
    manifest['measured'] = measured
    path = os.path.join(MANIFESTS, f'train_step_{family}.json')
    with open(path, 'w') as f:
        json.dump(manifest, f, indent=1)
        f.write('\n')
    print(f'{path}: {json.dumps(measured, indent=1)}')


if __name__ == '__main__':
    for fam in sys.argv[1:] or list(FAMILIES):
        make(fam)
