"""The training loop: loss goes down, exact resume, NaN stop, atomic checkpoints, VisualDL tags."""
import os

import numpy as np
import paddle
import pytest

from zoo.engine.trainer import Trainer, TrainingDiverged
from zoo.utils.config import Config

from _tiny import make_tiny_dataset, record_losses, tiny_config


@pytest.fixture(scope='module')
def tiny_root(tmp_path_factory):
    return make_tiny_dataset(str(tmp_path_factory.mktemp('tiny')))


def _weights(path):
    return paddle.load(os.path.join(path, 'model.pdparams'))


def test_training_lowers_the_loss(tiny_root, tmp_path):
    cfg = Config(tiny_config(tiny_root, iters=30))
    t = Trainer(cfg, save_dir=str(tmp_path), save_interval=30)
    losses = record_losses(t)
    t.train()
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses


def test_resume_reproduces_the_uninterrupted_run(tiny_root, tmp_path):
    full_dir, part_dir = str(tmp_path / 'full'), str(tmp_path / 'part')
    Trainer(Config(tiny_config(tiny_root, iters=6)), save_dir=full_dir, seed=3).train()
    # the "interrupted" run: stops at 3 (its own iters), then a new process resumes to 6


    t = Trainer(Config(tiny_config(tiny_root, iters=6)), save_dir=part_dir, seed=3, save_interval=3)
    t.iters = 3
    t.train()
    assert os.path.isdir(os.path.join(part_dir, 'iter_3'))
    Trainer(Config(tiny_config(tiny_root, iters=6)), save_dir=part_dir, seed=3,
            resume_model=os.path.join(part_dir, 'iter_3')).train()
    a, b = _weights(os.path.join(full_dir, 'iter_6')), _weights(os.path.join(part_dir, 'iter_6'))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k].numpy(), b[k].numpy(), err_msg=k)


def test_resume_from_a_bad_path_is_one_clear_error(tiny_root, tmp_path):
    from zoo.utils.errors import CheckpointError
    with pytest.raises(CheckpointError, match='not a checkpoint folder'):
        Trainer(Config(tiny_config(tiny_root)), save_dir=str(tmp_path), resume_model=str(tmp_path / 'x')).train()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_root, tmp_path):
    cfg = Config(tiny_config(tiny_root, iters=10, nan_after=4))
    with pytest.raises(TrainingDiverged) as e:
        Trainer(cfg, save_dir=str(tmp_path), save_interval=3).train()
    msg = str(e.value)
    assert 'iteration 5' in msg and 'iter_3' in msg
    sd = _weights(str(tmp_path / 'iter_3'))
    assert all(np.isfinite(v.numpy()).all() for v in sd.values())
    assert not os.path.exists(tmp_path / 'iter_5')


def test_interrupted_save_leaves_previous_checkpoint_loadable(tiny_root, tmp_path, monkeypatch):
    cfg = Config(tiny_config(tiny_root, iters=6))
    t = Trainer(cfg, save_dir=str(tmp_path), save_interval=3, keep_checkpoint_max=1)
    real_save = paddle.save
    calls = {'n': 0}

    def flaky_save(obj, path, *a, **k):
        calls['n'] += 1
        if calls['n'] == 5:  # first file of the second checkpoint's optimizer state
            with open(path, 'wb') as f:
                f.write(b'half')
            raise KeyboardInterrupt('killed while saving')
        return real_save(obj, path, *a, **k)
    monkeypatch.setattr(paddle, 'save', flaky_save)
    with pytest.raises(KeyboardInterrupt):
        t.train()
    monkeypatch.setattr(paddle, 'save', real_save)
    assert sorted(d for d in os.listdir(tmp_path) if not d.startswith('.') and os.path.isdir(tmp_path / d)) == ['iter_3']
    sd = _weights(str(tmp_path / 'iter_3'))
    assert len(sd) > 0
    # and training can resume from it
    Trainer(cfg, save_dir=str(tmp_path), resume_model=str(tmp_path / 'iter_3')).train()
    assert os.path.isdir(tmp_path / 'iter_6')


def test_visualdl_scalars_and_images(tiny_root, tmp_path):
    from visualdl import LogReader
    cfg = Config(tiny_config(tiny_root, iters=4))
    Trainer(cfg, save_dir=str(tmp_path), do_eval=True, use_vdl=True, save_interval=2).train()
    logs = [f for f in os.listdir(tmp_path) if f.startswith('vdlrecords')]
    assert logs, os.listdir(tmp_path)
    reader = LogReader(file_path=str(tmp_path / logs[0]))
    tags = reader.get_tags()
    scalars = set(tags.get('scalar', []))
    for tag in ('Train/loss', 'Train/loss_main', 'Train/loss_aux1', 'Train/lr', 'Train/batch_cost',
                'Train/reader_cost', 'Train/ips', 'Evaluate/mIoU', 'Evaluate/aAcc', 'Evaluate/mAcc'):
        assert tag in scalars, (tag, scalars)
    assert len(reader.get_data('scalar', 'Train/loss')) == 4
    assert [r.id for r in reader.get_data('scalar', 'Evaluate/mIoU')] == [2, 4]
    assert tags.get('image'), tags
    assert os.path.isfile(tmp_path / 'best_model' / 'model.pdparams')


def test_the_last_finite_checkpoint_is_read_from_disk(tiny_root, tmp_path):
    """A checkpoint an unguarded run wrote with NaN weights is never named as the one to go back to."""
    from zoo.engine.guard import last_finite_checkpoint
    from zoo.utils.checkpoint import load_file
    Trainer(Config(tiny_config(tiny_root, iters=4)), save_dir=str(tmp_path), save_interval=2).train()
    ckpts = [str(tmp_path / 'iter_2'), str(tmp_path / 'iter_4')]
    assert last_finite_checkpoint(ckpts) == ckpts[1]
    sd = load_file(os.path.join(ckpts[1], 'model.pdparams'), return_numpy=True)
    sd['cls.weight'][0, 0, 0, 0] = np.nan
    paddle.save(sd, os.path.join(ckpts[1], 'model.pdparams'))
    assert last_finite_checkpoint(ckpts) == ckpts[0]
    open(os.path.join(ckpts[0], 'model.pdopt'), 'wb').close()  # unreadable counts as not finite
    assert last_finite_checkpoint(ckpts) is None


def test_save_checkpoint_never_writes_a_nonfinite_state(tiny_root, tmp_path):
    t = Trainer(Config(tiny_config(tiny_root, iters=2)), save_dir=str(tmp_path))
    t._build()
    w = t.model.cls.weight
    w.set_value(paddle.full(w.shape, float('inf'), w.dtype))
    with pytest.raises(TrainingDiverged, match=r'model cls.weight.*nothing saved'):
        t.save_checkpoint(1, -1.0)
    assert os.listdir(tmp_path) == []


def test_resumed_run_tells_the_model_its_iteration(tiny_root, tmp_path):
    """A model whose training depends on the iteration (MCIBI's memory loss starts after a given
    one) hears it before the first step of a resumed run: train_step_hook(labels=None, ...)."""
    save = str(tmp_path)
    t = Trainer(Config(tiny_config(tiny_root, iters=6)), save_dir=save, seed=3, save_interval=3)
    t.iters = 3
    t.train()
    calls = []
    t = Trainer(Config(tiny_config(tiny_root, iters=6)), save_dir=save, seed=3,
                resume_model=os.path.join(save, 'iter_3'))
    build = t._build

    def build_with_hook():
        build()
        t.model.train_step_hook = lambda labels, lr, iteration: calls.append((labels is None, iteration))
    t._build = build_with_hook
    t.train()
    assert calls == [(True, 3), (False, 4), (False, 5), (False, 6)]
