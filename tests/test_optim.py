"""Optimizers and LR schedules (zoo/optim/): values against hand computations, the warmup forms,
parameter groups, the builder's checks of ``optimizer:`` / ``lr_scheduler:``."""
import math

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from zoo.builder import build_lr_scheduler, build_optimizer, validate_config
from zoo.optim.lr import PolynomialDecay, WarmupSchedule
from zoo.utils.config import Config
from zoo.utils.errors import ConfigError


def _schedule(iters=100, **node):
    return build_lr_scheduler(Config({'iters': iters, 'lr_scheduler': node}))


def _values(sched, n):
    out = []
    for _ in range(n):
        out.append(sched.last_lr)
        sched.step()
    return out


def test_poly_without_warmup_is_paddle_form_by_default():
    lrs = _values(_schedule(type='PolynomialDecay', learning_rate=0.01, end_lr=1e-4, power=0.9), 101)
    for t in (0, 1, 50, 99, 100):
        assert abs(lrs[t] - ((0.01 - 1e-4) * (1 - t / 100) ** 0.9 + 1e-4)) < 1e-15


def test_poly_end_lr_at_last_iter_is_mmengine_polylr():
    """mmengine's PolyLR(begin=0, end=160000) reaches eta_min at iteration 159999 (total_iters =
    end - begin - 1); the Fast-SCNN config asks for that form."""
    s = _schedule(160000, type='PolynomialDecay', learning_rate=0.12, end_lr=1e-4, power=0.9, end_lr_at_last_iter=True)
    s.step(159999)
    assert s.last_lr == 1e-4
    s.step(159998)
    assert abs(s.last_lr - ((0.12 - 1e-4) * (1 / 159999) ** 0.9 + 1e-4)) < 1e-15
    cfg = Config('configs/fast_scnn/fast_scnn_cityscapes_512x1024_160k.yml')
    s = build_lr_scheduler(cfg)
    s.step(cfg.iters - 1)
    assert s.last_lr == 1e-4


def test_cosine_against_hand_computation():
    lrs = _values(_schedule(40, type='CosineDecay', learning_rate=0.1, end_lr=0.001), 42)
    for t in (0, 7, 20, 33, 40):
        assert abs(lrs[t] - (0.001 + 0.099 * (1 + math.cos(math.pi * t / 40)) / 2)) < 1e-15
    assert lrs[20] == pytest.approx(0.0505) and lrs[41] == 0.001  # half way; after the end it stays


def test_sequential_warmup_is_paddleseg_linear_warmup():
    """PaddleSeg: LinearWarmup(PolynomialDecay(decay_steps=iters - W), W, start_lr, end_lr=lr)."""
    lrs = _values(_schedule(100, type='PolynomialDecay', learning_rate=0.05, end_lr=0.0, power=0.9,
                            warmup_iters=10, warmup_start_lr=0.005), 100)
    assert lrs[0] == 0.005
    assert abs(lrs[5] - (0.005 + 0.045 * 5 / 10)) < 1e-15
    assert lrs[10] == 0.05
    assert abs(lrs[55] - 0.05 * (1 - 45 / 90) ** 0.9) < 1e-15
    ref = paddle.optimizer.lr.LinearWarmup(paddle.optimizer.lr.PolynomialDecay(0.05, 90, 0.0, 0.9), 10, 0.005, 0.05)
    np.testing.assert_allclose(lrs, _values(ref, 100), rtol=0, atol=1e-15)


def test_multiplicative_warmup_is_sssegmentation_and_regseg_form():
    """RegSeg: lr * (1 - t/T)^0.9 * (0.1 + 0.9 t/W) for t < W; sssegmentation's linear warmup
    (1 - (1 - t/W)(1 - ratio)) * regular_lr is the same number."""
    lrs = _values(_schedule(1000, type='PolynomialDecay', learning_rate=0.05, power=0.9, warmup_iters=30,
                            warmup_ratio=0.1, warmup_mode='multiplicative'), 1000)
    for t in (0, 1, 17, 29, 30, 31, 500, 999):
        poly = 0.05 * (1 - t / 1000) ** 0.9
        hand = poly * (0.1 + 0.9 * t / 30) if t < 30 else poly
        assert abs(lrs[t] - hand) < 1e-15, t
        if t <= 30:
            assert abs(lrs[t] - (1 - (1 - t / 30) * (1 - 0.1)) * poly) < 1e-15
    # warmup_start_lr means the same first value in both modes
    s = _schedule(1000, type='PolynomialDecay', learning_rate=0.05, power=0.9, warmup_iters=30,
                  warmup_start_lr=0.005, warmup_mode='multiplicative')
    np.testing.assert_allclose(_values(s, 1000), lrs, rtol=1e-15, atol=0)


def test_any_paddle_schedule_by_name_with_warmup():
    lrs = _values(_schedule(50, type='ExponentialDecay', learning_rate=0.1, gamma=0.9, warmup_iters=5), 20)
    assert lrs[0] == 0.0 and abs(lrs[2] - 0.1 * 2 / 5) < 1e-15
    for t in range(5, 20):
        assert abs(lrs[t] - 0.1 * 0.9 ** (t - 5)) < 1e-15
    lrs = _values(_schedule(50, type='MultiStepDecay', learning_rate=0.1, milestones=[10, 20], gamma=0.1), 25)
    assert lrs[9] == 0.1 and abs(lrs[10] - 0.01) < 1e-15 and abs(lrs[24] - 0.001) < 1e-15


def test_one_cycle_against_hand_computation():
    iters, top = 100, 0.1
    lrs = _values(_schedule(iters, type='OneCycle', learning_rate=top, divide_factor=25.0, end_learning_rate=1e-4,
                            phase_pct=0.3), iters)

    def cos_anneal(a, b, pct):
        return b + (a - b) * (1 + math.cos(math.pi * pct)) / 2

    up = 0.3 * iters - 1  # Paddle's phase boundaries (as PyTorch's OneCycleLR)
    for t in (0, 10, 29):
        assert abs(lrs[t] - cos_anneal(top / 25, top, t / up)) < 1e-15
    for t in (30, 60, 99):
        assert abs(lrs[t] - cos_anneal(top, 1e-4, (t - up) / (iters - 1 - up))) < 1e-15
    assert abs(max(lrs) - top) < 1e-3 * top


def test_warmup_schedule_state_round_trip():
    def make():
        return _schedule(200, type='CosineAnnealingDecay', learning_rate=0.1, T_max=150, warmup_iters=20,
                         warmup_ratio=0.2)
    a = make()
    _values(a, 77)
    state = a.state_dict()
    b = make()
    b.set_state_dict(state)
    assert isinstance(b, WarmupSchedule)
    np.testing.assert_array_equal(_values(a, 60), _values(b, 60))


def test_schedule_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="did you mean 'CosineDecay'"):
        _schedule(type='CosineDecy', learning_rate=0.1)
    with pytest.raises(ConfigError, match="lr_scheduler.warmup_iter.*did you mean 'warmup_iters'"):
        _schedule(type='PolynomialDecay', learning_rate=0.1, warmup_iter=10)
    with pytest.raises(ConfigError, match=r'lr_scheduler.warmup_iters: 100 must be smaller than iters'):
        _schedule(type='PolynomialDecay', learning_rate=0.1, warmup_iters=100)
    with pytest.raises(ConfigError, match='warmup_mode'):
        _schedule(type='PolynomialDecay', learning_rate=0.1, warmup_iters=10, warmup_mode='linear')
    with pytest.raises(ConfigError, match='not both'):
        _schedule(type='PolynomialDecay', learning_rate=0.1, warmup_iters=10, warmup_ratio=0.1, warmup_start_lr=0.0)
    with pytest.raises(ConfigError, match="missing required key 'gamma'"):
        _schedule(type='ExponentialDecay', learning_rate=0.1)
    with pytest.raises(ConfigError, match="has no parameter 'last_epoch'"):
        _schedule(type='ExponentialDecay', learning_rate=0.1, gamma=0.9, last_epoch=3)
    with pytest.raises(ConfigError, match='lr_scheduler.power.*expects a number'):
        _schedule(type='PolynomialDecay', learning_rate=0.1, power='fast')
    with pytest.raises(ConfigError, match='lr_scheduler.gamma.*expects a number'):
        _schedule(type='ExponentialDecay', learning_rate=0.1, gamma='x')
    assert isinstance(_schedule(type='PolynomialDecay', learning_rate=0.1), PolynomialDecay)


class Net(nn.Layer):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2D(1, 2, 1), nn.BatchNorm2D(2))
        self.head = nn.Conv2D(2, 1, 1)

    def forward(self, x):
        return self.head(self.backbone(x))


def _cfg(**opt):
    return Config({'iters': 10, 'optimizer': {'type': 'SGD', 'momentum': 0.0, 'weight_decay': 0.1, **opt},
                   'lr_scheduler': {'type': 'PolynomialDecay', 'learning_rate': 1.0, 'power': 1.0}})


def _step(cfg, grad_zero=True):
    paddle.seed(0)
    net = Net()
    before = {k: v.numpy().copy() for k, v in net.named_parameters()}
    opt = build_optimizer(cfg, net, build_lr_scheduler(cfg))
    loss = net(paddle.ones([1, 1, 2, 2])).sum() * (0.0 if grad_zero else 1.0)
    loss.backward()
    opt.step()
    return before, {k: v.numpy() for k, v in net.named_parameters()}


def test_weight_decay_applies_by_default_and_skips_norm_and_bias_when_asked():
    before, after = _step(_cfg())
    # zero gradient: the change is pure weight decay (lr 1.0 * wd 0.1 * w)
    np.testing.assert_allclose(after['head.weight'], before['head.weight'] * 0.9, rtol=1e-5)
    np.testing.assert_allclose(after['backbone.1.weight'], before['backbone.1.weight'] * 0.9, rtol=1e-5)
    before, after = _step(_cfg(no_weight_decay_norm=True, no_weight_decay_bias=True))
    np.testing.assert_allclose(after['backbone.1.weight'], before['backbone.1.weight'])
    np.testing.assert_allclose(after['head.bias'], before['head.bias'])
    np.testing.assert_allclose(after['head.weight'], before['head.weight'] * 0.9, rtol=1e-5)
    # the rules are the builder's, not left behind on the parameters: a plain build decays again
    before, after = _step(_cfg())
    np.testing.assert_allclose(after['head.bias'], before['head.bias'] * 0.9, rtol=1e-5)


def test_backbone_lr_multiplier():
    before, after = _step(_cfg(weight_decay=0.0, backbone_lr_mult=0.1), grad_zero=False)
    head_delta = np.abs(after['head.bias'] - before['head.bias']).max()
    # d(sum)/d(head.bias) = 4 pixels -> update 4 * lr 1.0
    assert abs(head_delta - 4.0) < 1e-5
    bb = np.abs(after['backbone.0.bias'] - before['backbone.0.bias'])
    ref_before, ref_after = _step(_cfg(weight_decay=0.0), grad_zero=False)
    ref = np.abs(ref_after['backbone.0.bias'] - ref_before['backbone.0.bias'])
    np.testing.assert_allclose(bb, ref * 0.1, rtol=1e-4, atol=1e-7)


def test_gradient_clipping_by_global_norm():
    before, after = _step(_cfg(weight_decay=0.0, grad_clip_norm=0.5), grad_zero=False)
    ref_before, ref_after = _step(_cfg(weight_decay=0.0), grad_zero=False)
    trained = [k for k in sorted(after) if not k.endswith(('_mean', '_variance'))]  # not BN statistics
    delta = np.concatenate([(after[k] - before[k]).ravel() for k in trained])
    full = np.concatenate([(ref_after[k] - ref_before[k]).ravel() for k in trained])
    assert np.linalg.norm(full) > 0.5 and abs(np.linalg.norm(delta) - 0.5) < 1e-5  # lr 1: step = clipped grad
    np.testing.assert_allclose(delta, full * 0.5 / np.linalg.norm(full), rtol=1e-4, atol=1e-7)


def test_adamw_decoupled_decay_skips_norm():
    cfg = _cfg(type='AdamW', weight_decay=0.1, no_weight_decay_norm=True)
    del cfg.dic['optimizer']['momentum']
    before, after = _step(cfg)  # zero gradient: Adam's update is 0, decay is lr * wd * p
    np.testing.assert_allclose(after['head.weight'], before['head.weight'] * 0.9, rtol=1e-5)
    np.testing.assert_allclose(after['backbone.1.weight'], before['backbone.1.weight'])


def test_optimizer_config_errors():
    with pytest.raises(ConfigError, match="did you mean 'SGD'"):
        build_optimizer(_cfg(type='SDG'), Net(), 0.1)
    with pytest.raises(ConfigError, match="optimizer.momentun.*did you mean 'momentum'"):
        build_optimizer(_cfg(momentun=0.9), Net(), 0.1)
    with pytest.raises(ConfigError, match="optimizer.no_weight_decay_nrom.*did you mean 'no_weight_decay_norm'"):
        build_optimizer(_cfg(no_weight_decay_nrom=True), Net(), 0.1)
    with pytest.raises(ConfigError, match='optimizer.custom_cfg.0'):
        build_optimizer(_cfg(custom_cfg=[{'lr_mult': 2.0}]), Net(), 0.1)
    adamw = Config({'iters': 10, 'model': {'type': 'X'}, 'optimizer': {
        'type': 'AdamW', 'custom_cfg': [{'name': 'head', 'weight_decay_mult': 0.5}]}})
    with pytest.raises(ConfigError, match=r'<dict>: optimizer.custom_cfg: AdamW supports weight_decay_mult 0 or 1'):
        build_optimizer(adamw, Net(), 0.1)


def test_every_config_checks_its_optimizer_and_schedule_before_training():
    import glob
    for path in sorted(glob.glob('configs/*/*.yml')):
        if '_base_' not in path:
            validate_config(Config(path), for_training=True)
    cfg = Config('configs/demo/fast_scnn_demo_96x192_1k.yml', opts=['lr_scheduler.warmup_iters=1000'])
    with pytest.raises(ConfigError, match='fast_scnn_demo_96x192_1k.yml|--opts'):
        validate_config(cfg)
