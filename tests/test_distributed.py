"""Data-parallel training on CPU (gloo) under paddle.distributed.launch: two processes stay in
sync and their evaluation equals a single-process evaluation of the saved best_model; a
checkpoint resumes across a change of world size (1 -> 2 -> 1 processes); the multi-node path
(two launchers, ``--nnodes 2``) ends with identical weights on both ranks."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import paddle

from _tiny import make_tiny_dataset
from zoo.utils.checkpoint import load_file, nonfinite_keys

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, 'dist_train_script.py')


def _env():
    return {k: v for k, v in os.environ.items() if k not in ('CUDA_VISIBLE_DEVICES', 'PADDLE_TRAINER_ID')}


def _logs(log_dir):
    return ''.join(open(os.path.join(log_dir, f)).read() for f in sorted(os.listdir(log_dir))
                   if f.startswith('workerlog')) if os.path.isdir(log_dir) else ''


def launch(args, log_dir, nproc=2, extra=()):
    cmd = [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', str(nproc), '--log_dir', log_dir,
           *extra, SCRIPT, *[str(a) for a in args]]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)
    logs = _logs(log_dir)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:] + logs[-3000:]
    return logs


def single(args):
    r = subprocess.run([sys.executable, SCRIPT, *[str(a) for a in args]], capture_output=True, text=True,
                       env=_env(), timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r.stdout


def assert_ranks_equal(out):
    a = paddle.load(os.path.join(out, 'rank0.pdparams'))
    b = paddle.load(os.path.join(out, 'rank1.pdparams'))
    assert a.keys() == b.keys()
    # parameters are all-reduced; BN statistics: every rank takes rank 0's before evaluating and
    # saving (zoo/engine/run_files.py), so a checkpoint is the same whichever rank wrote it
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), rtol=1e-6, atol=1e-7, err_msg=k)
    return a, b


def test_two_process_cpu_training_keeps_ranks_in_sync(tmp_path):
    root = make_tiny_dataset(str(tmp_path / 'data'), n=8)
    out = str(tmp_path / 'out')
    logs = launch([root, out, '--do_eval'], str(tmp_path / 'log'))
    assert 'rank 0 of 2 done' in logs and 'rank 1 of 2 done' in logs, logs[-3000:]
    a, b = assert_ranks_equal(out)
    assert os.path.isdir(os.path.join(out, 'iter_4'))
    for k in a:
        np.testing.assert_array_equal(a[k].numpy(), b[k].numpy(), err_msg=k)
    # the training-time evaluation (images split over the ranks) is the saved model's
    from _tiny import tiny_config
    from zoo.builder import build_dataset, build_model
    from zoo.engine.evaluator import evaluate
    from zoo.utils.config import Config
    cfg = Config(tiny_config(root, iters=4, batch_size=2))
    model = build_model(cfg)
    model.set_state_dict(load_file(os.path.join(out, 'best_model', 'model.pdparams')))
    alone = evaluate(model, build_dataset(cfg, 'val'), {}, print_detail=False)
    with open(os.path.join(out, 'eval', 'iter_4', 'metrics.json')) as f:
        during = json.load(f)
    assert during['protocol']['processes'] == 2
    np.testing.assert_array_equal(during['confusion_matrix']['counts'], alone['confusion_matrix'])


def _state(ckpt):
    state = load_file(os.path.join(ckpt, 'train_state.pdstates'))
    opt = load_file(os.path.join(ckpt, 'model.pdopt'), return_numpy=True)
    params = load_file(os.path.join(ckpt, 'model.pdparams'), return_numpy=True)
    assert not nonfinite_keys(params) and not nonfinite_keys(opt)
    return state['iteration'], opt['LR_Scheduler'], params


def test_resume_across_a_change_of_world_size(tmp_path):
    """1 process -> iter_2, resumed by 2 processes -> iter_4, resumed by 1 process -> iter_6.
    The iteration and the LR schedule continue exactly; the weights follow another trajectory
    than an uninterrupted run (see docs/architecture.md, "Resume across a change of world size")."""
    root = make_tiny_dataset(str(tmp_path / 'data'), n=8)
    out, ref = str(tmp_path / 'out'), str(tmp_path / 'ref')
    single([root, ref, '--iters', '6', '--save_interval', '2'])                     # uninterrupted, 1 process
    single([root, out, '--iters', '6', '--save_interval', '2', '--stop_at', '2'])
    logs = launch([root, out, '--iters', '6', '--save_interval', '2', '--stop_at', '4',
                   '--resume_model', os.path.join(out, 'iter_2')], str(tmp_path / 'log'))
    assert 'resumed from' in logs and 'rank 1 of 2 done at iteration 4' in logs, logs[-3000:]
    assert_ranks_equal(out)
    stdout = single([root, out, '--iters', '6', '--save_interval', '2', '--resume_model', os.path.join(out, 'iter_4')])
    assert 'rank 0 of 1 done at iteration 6' in stdout
    for n in (2, 4, 6):
        it, sched, params = _state(os.path.join(out, f'iter_{n}'))
        ref_it, ref_sched, ref_params = _state(os.path.join(ref, f'iter_{n}'))
        assert it == ref_it == n
        assert sched == ref_sched  # the LR schedule is a function of the iteration only
        assert params.keys() == ref_params.keys()
    # the segment run by 1 process before the change is the uninterrupted run itself
    a, b = _state(os.path.join(out, 'iter_2'))[2], _state(os.path.join(ref, 'iter_2'))[2]
    assert all(np.array_equal(a[k], b[k]) for k in a)


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_node_launch_ends_with_equal_weights(tmp_path):
    """The multi-node path: two launchers (``--nnodes 2 --master 127.0.0.1:PORT``), one process each."""
    root = make_tiny_dataset(str(tmp_path / 'data'), n=8)
    out = str(tmp_path / 'out')
    master = f'127.0.0.1:{_free_port()}'
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, '-m', 'paddle.distributed.launch', '--nnodes', '2', '--master', master, '--rank',
               str(node), '--nproc_per_node', '1', '--log_dir', str(tmp_path / f'log{node}'), SCRIPT, root, out]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env()))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    logs = _logs(str(tmp_path / 'log0')) + _logs(str(tmp_path / 'log1'))
    assert all(p.returncode == 0 for p in procs), '\n'.join(o[-2000:] for o in outputs) + logs[-3000:]
    assert 'rank 0 of 2 done' in logs and 'rank 1 of 2 done' in logs, logs[-3000:]
    assert_ranks_equal(out)
    assert os.path.isdir(os.path.join(out, 'iter_4'))
