"""LR schedule values, parameter groups (no decay on norm/bias, backbone lr multiplier)."""
import numpy as np
import paddle
import paddle.nn as nn
import pytest

from zoo.engine.optim import PolynomialDecay, build_lr_scheduler, build_optimizer, check_optim_config
from zoo.utils.config import Config
from zoo.utils.errors import ConfigError


def test_poly_matches_mmseg_polylr_without_warmup():
    s = PolynomialDecay(0.01, iters=100, end_lr=1e-4, power=0.9)
    lrs = []
    for _ in range(101):
        lrs.append(s.get_lr())
        s.step()
    for t in (0, 1, 50, 99, 100):
        assert abs(lrs[t] - ((0.01 - 1e-4) * (1 - t / 100) ** 0.9 + 1e-4)) < 1e-12


def test_linear_warmup_then_poly_over_remaining_iters():
    s = PolynomialDecay(0.05, iters=100, end_lr=0.0, power=0.9, warmup_iters=10, warmup_start_lr=0.005)
    lrs = []
    for _ in range(100):
        lrs.append(s.get_lr())
        s.step()
    assert abs(lrs[0] - 0.005) < 1e-12
    assert abs(lrs[5] - (0.005 + 0.045 * 0.5)) < 1e-12
    assert abs(lrs[10] - 0.05) < 1e-12
    assert abs(lrs[55] - 0.05 * (1 - 45 / 90) ** 0.9) < 1e-12


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


def test_backbone_lr_multiplier():
    before, after = _step(_cfg(weight_decay=0.0, backbone_lr_mult=0.1), grad_zero=False)
    head_delta = np.abs(after['head.bias'] - before['head.bias']).max()
    # d(sum)/d(head.bias) = 4 pixels -> update 4 * lr 1.0
    assert abs(head_delta - 4.0) < 1e-5
    bb = np.abs(after['backbone.0.bias'] - before['backbone.0.bias'])
    ref_before, ref_after = _step(_cfg(weight_decay=0.0), grad_zero=False)
    ref = np.abs(ref_after['backbone.0.bias'] - ref_before['backbone.0.bias'])
    np.testing.assert_allclose(bb, ref * 0.1, rtol=1e-4, atol=1e-7)


def test_optimizer_config_errors():
    with pytest.raises(ConfigError, match="did you mean 'SGD'"):
        check_optim_config(_cfg(type='SDG'))
    with pytest.raises(ConfigError, match='optimizer.momentun'):
        check_optim_config(_cfg(momentun=0.9))
    bad = Config({'iters': 10, 'optimizer': {'type': 'SGD'},
                  'lr_scheduler': {'type': 'PolynomialDecay', 'learning_rate': 0.1, 'warmup_iters': 10}})
    with pytest.raises(ConfigError, match='warmup_iters'):
        check_optim_config(bad)
