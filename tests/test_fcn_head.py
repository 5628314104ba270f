"""FCNHead / DepthwiseSeparableFCNHead: mmseg module tree, shapes, input selection, dropout.

The reference key lists and the measured output differences come from
``tests/manifests/fast_scnn_mmseg.json`` (written by ``tests/manifests/fast_scnn_mmseg.py``
with mmsegmentation 1.2.2).
"""
import json
import os

import numpy as np
import paddle
import pytest

import zoo.models  # noqa: F401  (registers the heads)
from _parity import assert_outputs, float64_model, load_reference_weights, stored, to_tensor
from zoo.models.convert import check_mapping, torch_key
from zoo.models.heads.fcn_head import DepthwiseSeparableFCNHead, FCNHead
from zoo.utils.errors import CheckpointError, ConfigError
from zoo.utils.registry import HEADS

MANIFEST = os.path.join(os.path.dirname(__file__), 'manifests', 'fast_scnn_mmseg.json')
with open(MANIFEST) as f:
    HEAD_CASES = json.load(f)['parity']['heads']


def torch_to_paddle_names(sd):
    """mmseg (PyTorch) names -> ours: BN statistics renamed, batch counters dropped."""
    return {torch_key(k): v for k, v in sd.items() if torch_key(k) is not None}


def synthetic_state_dict(keys, seed=0):
    rng = np.random.RandomState(seed)
    return {k: (np.array(7, 'int64') if k.endswith('num_batches_tracked') else rng.randn(*shape).astype('float32'))
            for k, shape in keys.items()}


@pytest.mark.parametrize('name', sorted(HEAD_CASES))
def test_head_matches_mmseg_module_tree(name):
    case = HEAD_CASES[name]
    head = HEADS[case['type']](**case['kwargs'])
    src = synthetic_state_dict(case['state_dict'])
    sd = torch_to_paddle_names(src)
    check_mapping(sd, head)  # names and shapes equal, nothing missing or left over
    head.set_state_dict(sd)
    own = head.state_dict()
    for k, v in sd.items():
        np.testing.assert_array_equal(own[k].numpy(), v)


@pytest.mark.parametrize('name', sorted(HEAD_CASES))
def test_head_output_matched_mmseg(name):
    case = HEAD_CASES[name]
    assert case['max_abs_diff'] <= 1e-4 * max(1.0, case['ref_abs_max'])


@pytest.mark.parametrize('name', sorted(HEAD_CASES))
def test_head_reproduces_mmseg_stored_output(name):
    """Our head with mmseg's seeded weights on the stored input gives mmseg's output (float64)."""
    inputs, outputs, meta = stored('fast_scnn_mmseg')
    case = meta['heads'][name]
    head = load_reference_weights(float64_model(HEADS[case['type']], **case['kwargs']), meta, None,
                                  key=f'head/{name}')
    with paddle.no_grad():
        ours = head([to_tensor(inputs[f'head/{name}'])])
    assert_outputs({name: outputs[f'head/{name}']}, {name: ours})


def test_a_wrong_tree_is_rejected():
    case = HEAD_CASES['fcn_concat_dilated']
    kw = dict(case['kwargs'], concat_input=False)  # no conv_cat: the mmseg keys must not fit
    sd = torch_to_paddle_names(synthetic_state_dict(case['state_dict']))
    with pytest.raises(CheckpointError, match='conv_cat'):
        check_mapping(sd, FCNHead(**kw))


@pytest.mark.parametrize('dilation', [1, 3])
def test_output_keeps_feature_size(dilation):
    head = FCNHead(8, 4, 3, num_convs=2, dilation=dilation, concat_input=True)
    head.eval()
    out = head(paddle.rand([2, 8, 7, 9]))
    assert out.shape == [2, 3, 7, 9]
    assert head.convs[1].conv._dilation == [dilation, dilation]
    assert head.conv_cat.conv._dilation == [1, 1]  # mmseg: conv_cat is not dilated


def test_in_index_selects_backbone_feature():
    paddle.seed(0)
    head = FCNHead(6, 4, 2, num_convs=1, concat_input=False, in_index=-3)
    head.eval()
    feats = [paddle.rand([1, 6, 5, 5]), paddle.rand([1, 9, 3, 3]), paddle.rand([1, 12, 2, 2])]
    np.testing.assert_allclose(head(feats).numpy(), head(feats[0]).numpy())


def test_dropout2d_acts_in_train_mode_only():
    paddle.seed(0)
    x = paddle.rand([2, 8, 6, 6])
    head = FCNHead(8, 16, 3, num_convs=1, concat_input=False, dropout_ratio=0.5)
    assert isinstance(head.dropout, paddle.nn.Dropout2D)
    head.train()
    assert not np.allclose(head(x).numpy(), head(x).numpy())
    head.eval()
    np.testing.assert_array_equal(head(x).numpy(), head(x).numpy())
    no_drop = FCNHead(8, 16, 3, num_convs=1, concat_input=False, dropout_ratio=0.0)
    assert no_drop.dropout is None
    no_drop.train()
    np.testing.assert_allclose(no_drop(x).numpy(), no_drop(x).numpy())


def test_depthwise_separable_head_layers():
    head = DepthwiseSeparableFCNHead(16, 8, 4, num_convs=2, concat_input=True, bn_momentum=0.99)
    for conv in list(head.convs) + [head.conv_cat]:
        assert conv.depthwise_conv.activate is None  # mmseg dw_act_cfg=None
        assert isinstance(conv.pointwise_conv.activate, paddle.nn.ReLU)
        assert conv.depthwise_conv.conv._groups == conv.depthwise_conv.conv._in_channels
        assert conv.pointwise_conv.bn._momentum == pytest.approx(0.99)
    assert head(paddle.rand([1, 16, 5, 6])).shape == [1, 4, 5, 6]


def test_bad_arguments_raise():
    with pytest.raises(ConfigError, match='in_channels == channels'):
        FCNHead(8, 4, 3, num_convs=0)
    with pytest.raises(ConfigError, match='dilation'):
        DepthwiseSeparableFCNHead(8, 4, 3, dilation=2)


def test_backward_reaches_every_parameter():
    head = FCNHead(6, 4, 3, num_convs=2, concat_input=True)
    head.train()
    head(paddle.rand([2, 6, 5, 5])).mean().backward()
    for name, p in head.named_parameters():
        if not p.stop_gradient:
            assert p.grad is not None, name
