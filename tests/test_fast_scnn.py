"""Fast-SCNN: mmseg checkpoint import (from the recorded mmseg module tree), the output
contract (list of logits at input size; train [main, aux, aux], eval [main]), odd input sizes,
training, and loading pretrained weights.

``tests/manifests/fast_scnn_mmseg.json`` is written by ``tests/manifests/fast_scnn_mmseg.py``
(mmsegmentation 1.2.2 + torch, run outside the test suite); no torch is needed here.
"""
import json
import os

import numpy as np
import paddle
import pytest

import zoo.models  # noqa: F401  (registers everything)
from _parity import assert_outputs, float64_model, load_reference_weights, stored, to_tensor
from zoo.builder import build_model
from zoo.models.convert import convert, get_importer
from zoo.models.fast_scnn import FastSCNN
from zoo.models.layers import input_hw, resize
from zoo.utils.errors import CheckpointError

MANIFEST_PATH = os.path.join(os.path.dirname(__file__), 'manifests', 'fast_scnn_mmseg.json')
with open(MANIFEST_PATH) as f:
    MANIFEST = json.load(f)
NUM_CLASSES = MANIFEST['reference']['num_classes']


def mmseg_state_dict(seed=0, drop=()):
    """A synthetic mmseg checkpoint: every recorded key with its recorded shape, random values."""
    rng = np.random.RandomState(seed)
    sd = {}
    for k, shape in MANIFEST['state_dict'].items():
        if k.startswith(drop):
            continue
        if k.endswith('num_batches_tracked'):
            sd[k] = np.array(160000, 'int64')
        else:
            sd[k] = rng.randn(*shape).astype('float32')
    return sd


@pytest.fixture(scope='module')
def model():
    paddle.seed(0)
    return FastSCNN(num_classes=NUM_CLASSES)


def test_mmseg_import_fills_every_parameter_exactly(model):
    src = mmseg_state_dict()
    converted = convert(model, 'mmseg', src)  # raises unless names/shapes fill the model 1:1
    own = model.state_dict()
    assert sorted(converted) == sorted(own)
    # the mapping is a rename: each of our tensors is exactly one source tensor
    renamed = {k.replace('._mean', '.running_mean').replace('._variance', '.running_var'): k for k in own}
    assert len(renamed) == len(own)
    used = set(renamed)
    assert used == {k for k in src if not k.endswith('num_batches_tracked')}
    model.set_state_dict(converted)
    own = model.state_dict()
    for src_key, our_key in renamed.items():
        np.testing.assert_array_equal(own[our_key].numpy(), src[src_key], err_msg=our_key)


def test_import_rejects_checkpoints_that_do_not_fit(model):
    src = mmseg_state_dict()
    missing = dict(src)
    del missing['backbone.global_feature_extractor.ppm.2.1.conv.weight']
    with pytest.raises(CheckpointError, match='ppm.2.1.conv.weight'):
        convert(model, 'mmseg', missing)
    wrong = dict(src)
    wrong['decode_head.conv_seg.weight'] = np.zeros((150, 128, 1, 1), 'float32')  # ADE20K head
    with pytest.raises(CheckpointError, match='shape mismatch'):
        convert(model, 'mmseg', wrong)
    # dropping the source classifier leaves ours unfilled, which is reported too
    with pytest.raises(CheckpointError, match='missing 2'):
        convert(model, 'mmseg', src, ignore_source=('decode_head.conv_seg.',))


def test_import_into_model_without_auxiliary_heads():
    m = FastSCNN(NUM_CLASSES, enable_auxiliary_loss=False)
    assert get_importer(m, 'mmseg') is not None
    converted = convert(m, 'mmseg', mmseg_state_dict())
    assert not any(k.startswith('auxiliary_head') for k in converted)
    m.train()
    assert len(m(paddle.rand([1, 3, 64, 64]))) == 1


def test_recorded_parity_with_mmseg():
    parity = MANIFEST['parity']
    assert parity['passed'] and parity['worst_max_abs_diff'] <= 1e-4
    full = parity['inputs']['512x1024']
    assert set(full) == {'decode_head', 'auxiliary_head.0', 'auxiliary_head.1'}
    assert full['decode_head']['shape'] == [1, NUM_CLASSES, 512, 1024]


def test_our_model_reproduces_mmseg_stored_outputs():
    """Ours, with mmseg's seeded weights through the importer, on the stored input: the decode
    head's and both auxiliary heads' logits equal mmseg's (float64, 1e-9 of their magnitude)."""
    inputs, outputs, meta = stored('fast_scnn_mmseg')
    model = load_reference_weights(float64_model(FastSCNN, num_classes=meta['num_classes']), meta, 'mmseg')
    x = to_tensor(inputs['image'])
    with paddle.no_grad():
        feats = model.backbone(x)
        logits = [model.decode_head(feats)] + [head(feats) for head in model.auxiliary_head]
        ours = dict(zip(('decode_head', 'auxiliary_head.0', 'auxiliary_head.1'),
                        (resize(t, input_hw(x)) for t in logits)))
        assert_outputs({k: v for k, v in outputs.items() if not k.startswith('head/')}, ours)
        np.testing.assert_array_equal(model(x)[0].numpy(), ours['decode_head'].numpy())  # the eval forward


def test_train_and_eval_outputs(model):
    x = paddle.rand([2, 3, 64, 128])
    model.train()
    outs = model(x)
    assert [o.shape for o in outs] == [[2, NUM_CLASSES, 64, 128]] * 3
    model.eval()
    with paddle.no_grad():
        outs = model(x)
    assert [o.shape for o in outs] == [[2, NUM_CLASSES, 64, 128]]


def test_backbone_feature_strides(model):
    model.eval()
    with paddle.no_grad():
        higher, lower, fused = model.backbone(paddle.rand([1, 3, 64, 128]))
    assert higher.shape == [1, 64, 8, 16]  # 1/8
    assert lower.shape == [1, 128, 2, 4]  # 1/32
    assert fused.shape == [1, 128, 8, 16]


def test_odd_input_size(model):
    # 333x517 is not divisible by 32: the strided convs round up, the pyramid pooling pools
    # adaptively and everything is resized back to the input (as mmseg)
    model.eval()
    with paddle.no_grad():
        (out,) = model(paddle.rand([1, 3, 333, 517]))
    assert out.shape == [1, NUM_CLASSES, 333, 517]
    assert np.isfinite(out.numpy()).all()


def test_bn_momentum_is_mmseg_syncbn_momentum(model):
    bns = [m for m in model.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    assert len(bns) == 46
    assert all(abs(bn._momentum - 0.99) < 1e-9 for bn in bns)


def test_training_step_updates_weights():
    paddle.seed(1)
    m = FastSCNN(num_classes=3, pretrained=None)
    m.train()
    opt = paddle.optimizer.SGD(learning_rate=0.01, parameters=m.parameters())
    x = paddle.rand([2, 3, 64, 64])
    y = paddle.randint(0, 3, [2, 64, 64])
    before = m.decode_head.conv_seg.weight.numpy().copy()
    outs = m(x)
    loss = sum(w * paddle.nn.functional.cross_entropy(o, y, axis=1) for w, o in zip((1.0, 0.4, 0.4), outs))
    loss.backward()
    no_grad = [n for n, p in m.named_parameters() if not p.stop_gradient and p.grad is None]
    assert not no_grad
    opt.step()
    assert not np.allclose(before, m.decode_head.conv_seg.weight.numpy())


def test_pretrained_paddle_file_and_builder(tmp_path):
    src = FastSCNN(num_classes=4)
    path = str(tmp_path / 'fastscnn.pdparams')
    paddle.save(src.state_dict(), path)
    built = build_model({'model': {'type': 'FastSCNN', 'num_classes': 4, 'pretrained': path,
                                   'enable_auxiliary_loss': True}})
    assert isinstance(built, FastSCNN)
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(built.state_dict()[k].numpy(), v.numpy(), err_msg=k)


def test_pretrained_with_mmseg_names_is_converted(tmp_path):
    # a file holding mmseg names (running_mean/running_var) goes through the mmseg importer
    src = mmseg_state_dict(seed=3)
    path = str(tmp_path / 'mmseg_names.pdparams')
    paddle.save({k: paddle.to_tensor(v) for k, v in src.items()}, path)
    m = FastSCNN(num_classes=NUM_CLASSES, pretrained=path)
    own = m.state_dict()
    np.testing.assert_array_equal(own['backbone.feature_fusion.dwconv.bn._variance'].numpy(),
                                  src['backbone.feature_fusion.dwconv.bn.running_var'])
    np.testing.assert_array_equal(own['auxiliary_head.1.conv_seg.weight'].numpy(),
                                  src['auxiliary_head.1.conv_seg.weight'])
