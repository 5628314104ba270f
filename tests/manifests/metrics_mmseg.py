"""mmsegmentation's own metric values for a few confusion matrices (``metrics_mmseg.json``).

Run in the scratch reference environment (torch + mmcv-lite + mmsegmentation 1.2.2), NOT part of
``make test``:

    /work/scratch/envs/mmseg/bin/python tests/manifests/metrics_mmseg.py

For each case a confusion matrix is drawn from a seeded numpy generator (classes that are
never labelled, never predicted, or labelled and predicted but never right are forced in, since
that is where definitions differ); the four areas mmseg's ``IoUMetric.compute_metrics`` sums
(intersection, union, prediction, label) are taken from it, and
``IoUMetric.total_area_to_metrics(..., metrics=['mIoU', 'mDice', 'mFscore'])`` gives the
per-class values; the summary is mmseg's ``np.nanmean`` of each (before its rounding).
``tests/test_metrics.py`` compares ``zoo.engine.metrics.metrics_from_confusion`` to them.
"""
import datetime
import json
import os
import platform
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from fast_scnn_mmseg import _stub_mmcv_ext  # noqa: E402  (mmseg imports mmcv._ext; metrics need none of it)
OUT = os.path.join(HERE, 'metrics_mmseg.json')


def make_cases():
    cases = []
    for seed, n in ((0, 5), (1, 8), (2, 19)):
        rng = np.random.default_rng(seed)
        cm = rng.integers(0, 50, (n, n)) * (rng.random((n, n)) < 0.6)
        cm[np.arange(n), np.arange(n)] += rng.integers(0, 400, n)
        cm[n - 1, :] = 0  # never labelled ...
        cm[:, n - 1] = 0  # ... nor predicted: IoU NaN
        cm[n - 2, :] = 0  # never labelled, but predicted: IoU 0, Acc NaN
        cm[0, n - 2] = 7
        cm[1, 1] = 0      # labelled and predicted, never right: Fscore NaN in mmseg, Dice 0
        cm[2, 1] = 11
        cases.append(cm.astype(np.int64))
    return cases


def main():
    _stub_mmcv_ext()
    import mmseg
    import torch
    from mmseg.evaluation.metrics import IoUMetric
    out = {'produced_by': 'tests/manifests/metrics_mmseg.py',
           'date': datetime.date.today().isoformat(),
           'python': platform.python_version(), 'torch': torch.__version__, 'mmseg': mmseg.__version__,
           'call': "IoUMetric.total_area_to_metrics(inter, union, pred, label, ['mIoU', 'mDice', 'mFscore'])",
           'cases': []}
    for cm in make_cases():
        t = torch.from_numpy(cm.astype(np.float64))
        inter, label, pred = torch.diag(t), t.sum(1), t.sum(0)
        res = IoUMetric.total_area_to_metrics(inter, label + pred - inter, pred, label,
                                              ['mIoU', 'mDice', 'mFscore'])
        case = {'confusion_matrix': cm.tolist(),
                'per_class': {k: [None if not np.isfinite(v) else float(v) for v in np.asarray(a, np.float64)]
                              for k, a in res.items() if k != 'aAcc'},
                'summary': {'aAcc': float(res['aAcc'])}}
        for k, a in res.items():
            if k != 'aAcc':
                case['summary']['m' + k] = float(np.nanmean(np.asarray(a, np.float64)))
        out['cases'].append(case)
    with open(OUT, 'w') as f:
        json.dump(out, f, indent=1)
    print(f'wrote {OUT}: {len(out["cases"])} cases')


if __name__ == '__main__':
    main()
