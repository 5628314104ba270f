"""ModelEMA against a hand computation; --use_ema in the trainer: checkpointed, evaluated, and
best_model holds the EMA weights when they score higher."""
import json
import os

import numpy as np
import paddle
import pytest

from zoo.engine.ema import ModelEMA
from zoo.engine.trainer import Trainer
from zoo.utils.config import Config
from zoo.utils.errors import CheckpointError, ConfigError

from _tiny import make_tiny_dataset, tiny_config


def _net():
    paddle.seed(0)
    return paddle.nn.Sequential(paddle.nn.Conv2D(1, 2, 1), paddle.nn.BatchNorm2D(2))


def test_ema_equals_the_hand_computation():
    net = _net()
    w0 = net[0].weight.numpy().copy()
    mean0 = net[1]._mean.numpy().copy()
    ema = ModelEMA(net, decay=0.9)
    # three "steps": set known weights and BN statistics, update after each
    steps = [np.full_like(w0, 1.0), np.full_like(w0, -2.0), np.full_like(w0, 4.0)]
    means = [np.array([1.0, 2.0], np.float32), np.array([3.0, 0.0], np.float32), np.array([0.0, 5.0], np.float32)]
    for w, m in zip(steps, means):
        net[0].weight.set_value(w)
        net[1]._mean.set_value(m)
        ema.update(net)
    # by hand: e1 = .9 e0 + .1 w1; e2 = .9 e1 + .1 w2; e3 = .9 e2 + .1 w3
    want_w = 0.9 ** 3 * w0 + 0.9 ** 2 * 0.1 * 1.0 + 0.9 * 0.1 * -2.0 + 0.1 * 4.0
    np.testing.assert_allclose(ema.shadow['0.weight'].numpy(), want_w, rtol=1e-6, atol=1e-7)
    want_mean = 0.9 ** 3 * mean0 + 0.9 ** 2 * 0.1 * means[0] + 0.9 * 0.1 * means[1] + 0.1 * means[2]
    np.testing.assert_allclose(ema.shadow['1._mean'].numpy(), want_mean, rtol=1e-6, atol=1e-7)
    assert ema.updates == 3
    # swapped in for evaluation, restored afterwards
    with ema.swapped_in(net):
        np.testing.assert_allclose(net[0].weight.numpy(), want_w, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(net[0].weight.numpy(), steps[-1])


def test_ema_rejects_bad_decay_and_bad_state():
    with pytest.raises(ConfigError, match='ema_decay'):
        ModelEMA(_net(), decay=1.0)
    ema = ModelEMA(_net())
    with pytest.raises(CheckpointError, match='lack'):
        ema.set_state_dict({'0.weight': paddle.zeros([2, 1, 1, 1])})


@pytest.fixture(scope='module')
def tiny_root(tmp_path_factory):
    return make_tiny_dataset(str(tmp_path_factory.mktemp('tiny_ema')))


def test_trainer_evaluates_and_keeps_the_ema(tiny_root, tmp_path):
    cfg = Config(tiny_config(tiny_root, iters=4))
    t = Trainer(cfg, save_dir=str(tmp_path), do_eval=True, save_interval=2, use_ema=True, ema_decay=0.5)
    t.train()
    # both the weights and their average were evaluated at each evaluation
    for it in (2, 4):
        for name in (f'iter_{it}', f'iter_{it}_ema'):
            with open(tmp_path / 'eval' / name / 'metrics.json') as f:
                doc = json.load(f)
            assert doc['model']['iteration'] == it
    with open(tmp_path / 'eval' / 'iter_4_ema' / 'metrics.json') as f:
        assert 'EMA' in json.load(f)['model']['weights']
    # the checkpoint carries the average; best_model holds whichever scored higher
    ema_sd = paddle.load(str(tmp_path / 'iter_4' / 'ema.pdparams'))
    for k, v in t.ema.state_dict().items():
        np.testing.assert_array_equal(ema_sd[k].numpy(), v.numpy(), err_msg=k)
    with open(tmp_path / 'best_model' / 'score.json') as f:
        score = json.load(f)
    best = paddle.load(str(tmp_path / 'best_model' / 'model.pdparams'))
    with open(tmp_path / 'eval' / f'iter_{score["iteration"]}' / 'metrics.json') as f:
        raw = json.load(f)['summary']['mIoU']
    with open(tmp_path / 'eval' / f'iter_{score["iteration"]}_ema' / 'metrics.json') as f:
        ema = json.load(f)['summary']['mIoU']
    assert score['weights'] == ('ema' if ema > raw else 'model')
    assert score['mIoU'] == pytest.approx(max(ema, raw))
    # best_model's weights are the ones score.json names (that iteration's model or its average)
    named = paddle.load(str(tmp_path / f'iter_{score["iteration"]}' /
                            ('ema.pdparams' if score['weights'] == 'ema' else 'model.pdparams')))
    assert best.keys() == named.keys()
    for k, v in named.items():
        np.testing.assert_array_equal(best[k].numpy(), v.numpy(), err_msg=k)


def test_ema_wins_best_model_when_it_scores_higher(tiny_root, tmp_path, monkeypatch):
    """Force the EMA's score above the weights': best_model must then hold the EMA weights."""
    cfg = Config(tiny_config(tiny_root, iters=2))
    t = Trainer(cfg, save_dir=str(tmp_path), do_eval=True, save_interval=2, use_ema=True, ema_decay=0.5)
    real = Trainer.evaluate

    def rigged(self, iteration, writer, ema=False):
        res = real(self, iteration, writer, ema)
        res['mIoU'] = 0.9 if ema else 0.1
        return res
    monkeypatch.setattr(Trainer, 'evaluate', rigged)
    t.train()
    with open(tmp_path / 'best_model' / 'score.json') as f:
        assert json.load(f) == {'iteration': 2, 'mIoU': 0.9, 'weights': 'ema'}
    best = paddle.load(str(tmp_path / 'best_model' / 'model.pdparams'))
    for k, v in t.ema.state_dict().items():
        np.testing.assert_array_equal(best[k].numpy(), v.numpy(), err_msg=k)
    # and the model itself kept its own weights
    assert any(not np.array_equal(t.model.state_dict()[k].numpy(), v.numpy()) for k, v in t.ema.state_dict().items())


def test_resume_restores_the_ema(tiny_root, tmp_path):
    full, part = str(tmp_path / 'full'), str(tmp_path / 'part')
    a = Trainer(Config(tiny_config(tiny_root, iters=4)), save_dir=full, seed=3, use_ema=True, ema_decay=0.7)
    a.train()
    b = Trainer(Config(tiny_config(tiny_root, iters=4)), save_dir=part, seed=3, use_ema=True, ema_decay=0.7,
                save_interval=2)
    b.iters = 2
    b.train()
    c = Trainer(Config(tiny_config(tiny_root, iters=4)), save_dir=part, seed=3, use_ema=True, ema_decay=0.7,
                resume_model=os.path.join(part, 'iter_2'))
    c.train()
    for k, v in a.ema.state_dict().items():
        np.testing.assert_array_equal(c.ema.state_dict()[k].numpy(), v.numpy(), err_msg=k)


def test_resume_without_ema_file_starts_the_average_from_the_checkpoint(tiny_root, tmp_path):
    """A checkpoint written without --use_ema: the average starts from its weights, not from the
    freshly initialised model."""
    save = str(tmp_path)
    a = Trainer(Config(tiny_config(tiny_root, iters=4)), save_dir=save, seed=3, save_interval=2)
    a.iters = 2
    a.train()
    assert not os.path.exists(os.path.join(save, 'iter_2', 'ema.pdparams'))
    b = Trainer(Config(tiny_config(tiny_root, iters=4)), save_dir=save, seed=3, use_ema=True, ema_decay=0.7,
                resume_model=os.path.join(save, 'iter_2'))
    b._build()  # resume only (no training step), so the EMA is what resume() made of iter_2
    b.resume(os.path.join(save, 'iter_2'))
    ckpt = paddle.load(os.path.join(save, 'iter_2', 'model.pdparams'))
    for k, v in ckpt.items():
        np.testing.assert_array_equal(b.ema.state_dict()[k].numpy(), v.numpy().astype(b.ema.state_dict()[k].numpy().dtype),
                                      err_msg=k)


def test_train_tool_flags():
    import importlib.util
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location('tool_train', os.path.join(root, 'tools', 'train.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    args = tool.parse_args(['--config', 'c.yml', '--use_ema', '--ema_decay', '0.99', '--verbose'])
    assert args.use_ema and args.ema_decay == 0.99 and args.verbose
    args = tool.parse_args(['--config', 'c.yml'])
    assert not args.use_ema and args.ema_decay == 0.999 and not args.verbose
