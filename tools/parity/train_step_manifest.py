"""Write ``tests/manifests/train_step_<family>.json`` from a reference run and record our figures.

    python tools/parity/train_step_manifest.py fast_scnn dmnet deeplabv3 mcibi regseg deeplabv3_paddleseg
    python tools/parity/train_step_manifest.py --table     # the figures as docs/weights.md shows them

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
from train_step_common import (LOSS_TOL, OUT_ROOT, TENSOR_TOL, compare, evidence, reference_weights,  # noqa: E402
                               relative_difference, schedule_difference, schedule_evidence)

MANIFESTS = os.environ.get('TRAIN_STEP_MANIFESTS', os.path.join(ROOT, 'tests', 'manifests'))
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
    importer (one at a time, to hold one copy of the model's tensors): with the BN running variance
    kept by Paddle's rule (the biased shadow; what our BatchNorm must match), its change from the
    initial weights (``update``), with every parameter replaced by its momentum buffer
    (``velocity``), and PyTorch's own (unbiased) BN running variances (``torch_running_var``)."""
    import paddle
    previous = paddle.get_default_dtype()
    paddle.set_default_dtype('float64')
    try:
        _, model = ours.build(spec['config'], spec['opts'])
        trainable = {n for n, p in model.named_parameters() if not p.stop_gradient}
        state = groups['state']
        after = {**state, **groups['biased_var']}

        def converted(sd, keep=lambda k: True):
            out = ours.import_reference(model, spec['source'], sd)
            return {k: evidence(k, v) for k, v in out.items() if keep(k)}
        ev = {'state': converted(after)}
        init = reference_weights({k: v.shape for k, v in state.items()}, spec['weight_seed'])
        ev['update'] = converted({k: (v - init[k] if v.dtype.kind == 'f' else v) for k, v in after.items()})
        del init
        ev['velocity'] = converted({**state, **groups['momentum']}, lambda k: k in trainable)
        torch_var = converted(state, lambda k: k.endswith('_variance'))
    finally:
        paddle.set_default_dtype(previous)
    torch_var = {k: v for k, v in torch_var.items() if v != ev['state'][k]}
    return ev, torch_var


def tolerances(measured):
    """The test's tolerances: the Done-means ones (``LOSS_TOL``, ``TENSOR_TOL``), except where the
    measured gap exceeds them AND is of the order of how far our own run moves when its initial
    weights change in their last bits (``self_sensitivity``: the float64 floor of this network after
    these steps; "of the order": at most 10x it); there 10x the gap, with that cause. Returns
    (tolerance, gaps the floor does not explain)."""
    tol = {'loss': LOSS_TOL, 'tensor': {}, 'cause': {}}
    floor = measured['self_sensitivity']
    unexplained = []
    gap, below = max(measured['loss_rel_diff']), max(floor['loss_rel_diff'])
    if gap > LOSS_TOL:
        if 10 * below >= gap:
            tol['loss'] = 10 * gap
            tol['cause']['loss'] = f'float64 floor: a last-bit change of the initial weights moves the loss {below:.2g}'
        else:
            unexplained.append(f'loss {gap:.3g} > {LOSS_TOL:g} (float64 floor {below:.3g})')
    for kind, w in measured['worst_rel_diff'].items():
        if w['value'] > TENSOR_TOL:
            below = floor['worst_rel_diff'].get(kind, {}).get('value', 0.0)
            if 10 * below >= w['value']:
                tol['tensor'][kind] = 10 * w['value']
                tol['cause'][kind] = (f'float64 floor: a last-bit change of the initial weights moves {kind} '
                                      f'({floor["worst_rel_diff"][kind]["tensor"]}) by {below:.2g}')
            else:
                unexplained.append(f'{kind} {w["value"]:.3g} at {w["tensor"]} > {TENSOR_TOL:g} (float64 floor '
                                   f'{below:.3g})')
    return tol, unexplained


def torch_variance_gap(manifest, run):
    """The measured effect of PyTorch's unbiased running variance: our BN variance against the
    reference's true one (the manifest keeps its evidence separately)."""
    worst = 0.0
    for name, r in manifest.get('torch_running_var', {}).items():
        worst = max(worst, relative_difference(run['evidence']['state'][name], r))
    return worst


PRIMARY = 'paddle_kernel'
SELF_PERTURBATION = 2.0 ** -52   # about one unit in the last place of a float64


def make(family):
    record, groups, schedule = _load(family, PRIMARY)
    others = sorted(v for v in os.listdir(os.path.join(OUT_ROOT, family)) if v != PRIMARY)
    spec = dict(FAMILIES[family])
    spec.update(source=record['source'], num_classes=record['num_classes'], start_iter=record['start_iter'],
                steps=record['steps'], batch_seed=0, weight_seed=0, batch_shape=record['batch_shape'])
    ev, torch_var = _converted_evidence(spec, groups)
    reference_shapes = {k: list(v.shape) for k, v in groups['state'].items()}
    del groups
    deviations, deviation_evidence = {}, {}
    for variant in others:
        dev_record, dev_groups, _ = _load(family, variant)
        deviations[variant] = {'cause': dev_record['variant_note'], 'losses': dev_record['losses'],
                               'lrs': dev_record['lrs']}
        deviation_evidence[variant] = _converted_evidence(spec, dev_groups)[0]
        del dev_groups
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
        'reference_shapes': reference_shapes,
        'reference_dropout_calls': record['dropout_calls'],
        'evidence': ev,
        'torch_running_var': torch_var,
        'reference_variant': record['variant_note'],
        # reference runs that differ from the one above in one named way (our gap to them is its effect)
        'deviations': deviations,
        'schedule': schedule_evidence(schedule),
        'produced': {'reference_run': record['produced'], 'manifest_by': 'tools/parity/train_step_manifest.py',
                     'date': datetime.date.today().isoformat(), 'platform': platform.platform()},
    }
    run = ours.run(spec, manifest['reference_shapes'])
    measured = compare(manifest['reference'], ev, run)
    measured['deviations'] = {name: compare(dev, deviation_evidence[name], run) for name, dev in deviations.items()}
    # our own run from initial weights perturbed in their last bits: how far rounding-sized
    # differences carry after three steps of this network, whatever the implementation
    perturbed = ours.run(dict(spec, perturb=SELF_PERTURBATION), manifest['reference_shapes'])
    measured['self_sensitivity'] = dict(compare(run, run['evidence'], perturbed),
                                        perturbation=SELF_PERTURBATION)
    n = min(len(schedule), len(ours_schedule))
    measured['schedule'] = {
        'iterations': int(len(schedule)), 'ours_iterations': int(len(ours_schedule)),
        'max_abs_diff': float(np.abs(ours_schedule[:n] - schedule[:n]).max()),
        'max_rel_diff': float((np.abs(ours_schedule[:n] - schedule[:n]) / np.abs(schedule[:n]).clip(1e-300)).max()),
        'evidence_diff': schedule_difference(ours_schedule, manifest['schedule'])}
    manifest['tolerance'], unexplained = tolerances(measured)
    for line in unexplained:
        print(f'{family}: NOT EXPLAINED: {line}')
    measured['torch_unbiased_running_var_rel_diff'] = torch_variance_gap(manifest, run)
    measured['dropout_calls_equal'] = [list(c) for c in run['dropout_calls']] == [list(c) for c in
                                                                                  record['dropout_calls']]
    measured['loss_parts'] = {'ours': run['loss_parts'], 'reference': record['loss_parts']}
    measured['loadavg'] = open('/proc/loadavg').read().split()[:3]
    manifest['measured'] = measured
    path = os.path.join(MANIFESTS, f'train_step_{family}.json')
    write_manifest(path, manifest)
    print(f'{path}: {json.dumps(measured, indent=1)}')


def write_manifest(path, manifest):
    """JSON with one line per tensor's evidence (the bulk), ``measured`` and ``tolerance`` indented."""
    def compact(v):
        return json.dumps(v, separators=(',', ':'))
    lines = ['{']
    for i, (key, value) in enumerate(manifest.items()):
        end = ',' if i < len(manifest) - 1 else ''
        if key == 'evidence':
            lines.append(' "evidence": {')
            for j, (group, tensors) in enumerate(value.items()):
                lines.append(f'  {json.dumps(group)}: {{')
                lines += [f'   {json.dumps(n)}: {compact(e)}' + (',' if t < len(tensors) - 1 else '')
                          for t, (n, e) in enumerate(tensors.items())]
                lines.append('  }' + (',' if j < len(value) - 1 else ''))
            lines.append(' }' + end)
        elif key in ('measured', 'tolerance', 'deviations'):
            lines.append(f' {json.dumps(key)}: {json.dumps(value, indent=1)}{end}')
        else:
            lines.append(f' {json.dumps(key)}: {compact(value)}{end}')
    lines.append('}')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def table():
    """The figures of every manifest as the markdown table of docs/weights.md."""
    rows = ['| family (reference) | start iter, batch | loss rel. diff, steps 1-3 | worst parameter / update | '
            'worst BN statistics / buffer | worst momentum buffer | LR schedule max abs diff (iterations) |',
            '| --- | --- | --- | --- | --- | --- | --- |']
    for family in FAMILIES:
        path = os.path.join(MANIFESTS, f'train_step_{family}.json')
        if not os.path.exists(path):
            continue
        with open(path) as f:
            m = json.load(f)
        me, w = m['measured'], m['measured']['worst_rel_diff']

        def worst(*kinds):
            return max((w[k]['value'] for k in kinds if k in w), default=0.0)
        rows.append(
            f"| {family} ({m['reference']['reference']}) | {m['ours']['start_iter']}, "
            f"{'x'.join(str(v) for v in m['ours']['batch_shape'])} | "
            f"{', '.join(f'{x:.1e}' for x in me['loss_rel_diff'])} | "
            f"{worst('parameter'):.1e} / {worst('parameter_update'):.1e} | "
            f"{worst('bn_stats', 'bn_stats_update'):.1e} / {worst('buffer', 'buffer_update'):.1e} | "
            f"{worst('momentum'):.1e} | {me['schedule']['max_abs_diff']:.1e} ({me['schedule']['iterations']}) |")
    return '\n'.join(rows)


if __name__ == '__main__':
    if sys.argv[1:] == ['--table']:
        print(table())
    for fam in [a for a in sys.argv[1:] if a != '--table'] or ([] if '--table' in sys.argv else list(FAMILIES)):
        make(fam)
