"""Two CPU processes under paddle.distributed.launch train and end with identical weights, and
their evaluation equals a single-process evaluation of the saved best_model."""
import json
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
    # parameters are all-reduced
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), rtol=1e-6, atol=1e-7, err_msg=k)
    assert os.path.isdir(os.path.join(out, 'iter_4'))
    # BN statistics: every rank took rank 0's before evaluating and saving (zoo/engine/run_files.py),
    # so the training-time evaluation (images split over the ranks) is the saved model's
    for k in a:
        np.testing.assert_array_equal(a[k].numpy(), b[k].numpy(), err_msg=k)
    from _tiny import tiny_config
    from zoo.builder import build_dataset, build_model
    from zoo.engine.evaluator import evaluate
    from zoo.utils.config import Config
    cfg = Config(tiny_config(root, iters=4, batch_size=2))
    model = build_model(cfg)
    model.set_state_dict(paddle.load(os.path.join(out, 'best_model', 'model.pdparams')))
    alone = evaluate(model, build_dataset(cfg, 'val'), {}, print_detail=False)
    with open(os.path.join(out, 'eval', 'iter_4', 'metrics.json')) as f:
        during = json.load(f)
    assert during['protocol']['processes'] == 2
    np.testing.assert_array_equal(during['confusion_matrix']['counts'], alone['confusion_matrix'])
