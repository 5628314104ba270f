"""Two CPU processes under paddle.distributed.launch train and end with identical weights."""
import os
import subprocess
import sys

import numpy as np
import paddle

from _tiny import make_tiny_dataset

HERE = os.path.dirname(os.path.abspath(__file__))


def test_two_process_cpu_training_keeps_ranks_in_sync(tmp_path):
    root = make_tiny_dataset(str(tmp_path / 'data'), n=8)
    out = str(tmp_path / 'out')
    env = {k: v for k, v in os.environ.items() if k != 'CUDA_VISIBLE_DEVICES'}
    r = subprocess.run([sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', '2',
                        '--log_dir', str(tmp_path / 'log'), os.path.join(HERE, 'dist_train_script.py'), root, out],
                       capture_output=True, text=True, env=env, timeout=600)
    logs = ''.join(open(os.path.join(tmp_path / 'log', f)).read() for f in sorted(os.listdir(tmp_path / 'log'))
                   if f.startswith('workerlog'))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:] + logs[-3000:]
    assert 'rank 0 of 2 done' in logs and 'rank 1 of 2 done' in logs, logs[-3000:]
    a = paddle.load(os.path.join(out, 'rank0.pdparams'))
    b = paddle.load(os.path.join(out, 'rank1.pdparams'))
    assert a.keys() == b.keys()
    # parameters are all-reduced; BN running statistics are per-rank on CPU (no SyncBN there)
    for k in a:
        if k.endswith(('_mean', '_variance')):
            continue
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), rtol=1e-6, atol=1e-7, err_msg=k)
    assert os.path.isdir(os.path.join(out, 'iter_4'))
