"""The "Training recipe parity" table of docs/weights.md, from the stored manifests.

    python tools/parity/train_step_report.py

Reads ``tests/manifests/train_step_<family>.json`` (written from the reference's own run by
``train_step_manifest.py``) and prints, per family: the reference, the config, the largest relative
loss difference over the three steps, the worst relative difference of every tensor group after
step 3 (with the tensor), the whole LR schedule's largest absolute difference, and what the named
deviations would change. No reference needs to be installed.
"""
import glob
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REFERENCES = {
    'fast_scnn': 'mmsegmentation 1.2.2',
    'dmnet': 'mmsegmentation 1.2.2',
    'deeplabv3': 'mmsegmentation 1.2.2',
    'mcibi': 'sssegmentation 1.7.0',
    'regseg': 'RegSeg (official)',
    'deeplabv3_paddleseg': 'PaddleSeg 2.8',
}
GROUP_ORDER = ('parameter', 'parameter_update', 'momentum', 'bn_stats', 'bn_stats_update', 'buffer', 'buffer_update')


def _e(x):
    return f'{x:.1e}'


def load_manifests(root=ROOT):
    out = {}
    for path in sorted(glob.glob(os.path.join(root, 'tests', 'manifests', 'train_step_*.json'))):
        with open(path) as f:
            m = json.load(f)
        out[m['family']] = m
    return out


def worst(groups):
    """The group with the largest relative difference: (group, value, tensor)."""
    name = max(groups, key=lambda g: groups[g]['value'])
    return name, groups[name]['value'], groups[name]['tensor']


def table(manifests):
    lines = ['| family | reference | config | loss rel. diff (max of 3 steps) | worst tensor rel. diff after step 3 | '
             'LR schedule max abs. diff (iterations) | own float64 floor (worst) |',
             '| --- | --- | --- | --- | --- | --- | --- |']
    for fam in REFERENCES:
        if fam not in manifests:
            continue
        m = manifests[fam]
        meas = m['measured']
        g, v, t = worst(meas['worst_rel_diff'])
        sg, sv, _ = worst(meas['self_sensitivity']['worst_rel_diff'])
        sched = meas['schedule']
        lines.append(f"| {fam} | {REFERENCES[fam]} | `{os.path.basename(m['ours']['config'])}` | "
                     f"{_e(max(meas['loss_rel_diff']))} | {_e(v)} ({g}, `{t}`) | "
                     f"{_e(sched['max_abs_diff'])} ({sched['iterations']}) | {_e(sv)} ({sg}) |")
    return '\n'.join(lines)


def groups_table(manifests):
    lines = ['| family | ' + ' | '.join(GROUP_ORDER) + ' |', '| --- |' + ' --- |' * len(GROUP_ORDER)]
    for fam in REFERENCES:
        if fam not in manifests:
            continue
        w = manifests[fam]['measured']['worst_rel_diff']
        lines.append(f'| {fam} | ' + ' | '.join(_e(w[g]['value']) if g in w else '' for g in GROUP_ORDER) + ' |')
    return '\n'.join(lines)


def deviations(manifests):
    lines = []
    for fam in REFERENCES:
        if fam not in manifests:
            continue
        m = manifests[fam]
        for key, dev in m['deviations'].items():
            meas = m['measured']['deviations'][key]
            g, v, t = worst(meas['worst_rel_diff'])
            lines.append(f"* {fam}, `{key}`: {dev['cause']}. With it the loss differs by up to "
                         f"{_e(max(meas['loss_rel_diff']))} and the worst tensor by {_e(v)} ({g}, `{t}`).")
        var = m['measured'].get('torch_unbiased_running_var_rel_diff')
        if var:
            lines.append(f'* {fam}, BN running variance: PyTorch updates it with the unbiased batch variance, '
                         f'Paddle with the biased one; on the 4x64x64 parity batch the running variances then '
                         f'differ by up to {_e(var)} (relative).')
        for kind, cause in m.get('tolerance', {}).get('cause', {}).items():
            lines.append(f"* {fam}: tolerance for {kind} widened to {_e(m['tolerance']['tensor'][kind])}: {cause}.")
    return '\n'.join(lines)


def main():
    manifests = load_manifests()
    print(table(manifests))
    print()
    print(groups_table(manifests))
    print()
    print(deviations(manifests))


if __name__ == '__main__':
    main()
