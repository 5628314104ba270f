"""DeepLabV3: configs build and run, output contract, importers fill the model exactly
(manifests of PaddleSeg 2.8 / mmseg 1.2.2 trees), training lowers the loss."""
import glob
import json
import os

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import zoo
from _parity import assert_outputs, float64_model, load_reference_weights, stored, to_tensor
from zoo.models.backbones.resnet import ResNet
from zoo.models.convert import convert
from zoo.models.deeplabv3 import DeepLabV3
from zoo.models.layers import input_hw, resize
from zoo.utils.config import Config
from zoo.utils.errors import CheckpointError, ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the configs reproducing PaddleSeg's and mmseg's published rows (``*_custom_*``: a user's data, tests/test_custom_dataset.py)
CONFIGS = sorted(p for p in glob.glob(os.path.join(ROOT, 'configs', 'deeplabv3', '*.yml')) if '_custom_' not in p)
MANIFESTS = {'paddleseg': os.path.join(ROOT, 'tests', 'manifests', 'deeplabv3_paddleseg.json'),
             'mmseg': os.path.join(ROOT, 'tests', 'manifests', 'deeplabv3_mmseg.json')}
NO_DOWNLOAD = ['model.backbone.pretrained=null']


def _cases(measured_only=False):
    out = []
    for source, path in MANIFESTS.items():
        for name, entry in json.load(open(path)).items():
            if not name.startswith('_') and (not measured_only or 'parity' in entry):
                out.append(pytest.param(source, entry, id=f'{source}-{name}'))
    return out


def _lazy_model(config, opts=()):
    """Full-size model without initializing its weights (names and shapes only)."""
    with paddle.LazyGuard():
        return zoo.build_model(Config(os.path.join(ROOT, config), opts=NO_DOWNLOAD + list(opts)))


def tiny_deeplabv3(num_classes=3, aux=True, **kw):
    backbone = ResNet(depth=18, deep_stem=True, avg_down=True, stem_channels=16, base_channels=8, output_stride=8)
    aux_cfg = {'in_index': 2, 'channels': 8, 'num_convs': 1, 'concat_input': False} if aux else None
    return DeepLabV3(num_classes, backbone, aspp_ratios=[1, 2, 3], aspp_out_channels=16, auxiliary_head=aux_cfg, **kw)


def test_configs_present():
    names = {os.path.basename(p) for p in CONFIGS}
    assert {'deeplabv3_resnet50-vd-os8_cityscapes_512x1024_80k.yml', 'deeplabv3_resnet101-vd-os8_cityscapes_512x1024_80k.yml',
            'deeplabv3_resnet50-vd-os8_voc12aug_512x512_40k.yml', 'deeplabv3_resnet101-vd-os8_voc12aug_512x512_40k.yml',
            'deeplabv3_r50-d8_cityscapes_512x1024_80k.yml',
            'deeplabv3_r101-d8_cityscapes_512x1024_80k.yml'} <= names


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_validates_and_builds_full_size(path):
    cfg = Config(path, opts=NO_DOWNLOAD)
    zoo.validate_config(cfg)
    with paddle.LazyGuard():
        model = zoo.build_model(cfg)
    is_voc = 'voc12aug' in path
    assert model.decode_head.conv_seg.weight.shape[0] == (21 if is_voc else 19)
    assert cfg.dic['train_dataset']['type'] == ('PascalVOC' if is_voc else 'Cityscapes')
    if is_voc:
        assert cfg.dic['train_dataset']['mode'] == 'trainaug' and cfg.dic['val_dataset']['mode'] == 'val'
    assert cfg.dic['test_config']['flip_horizontal'] and len(cfg.dic['test_config']['scales']) > 1
    n_aux = int(model.auxiliary_head is not None)
    assert len(cfg.dic['loss']['coef']) == 1 + n_aux
    # the backbone pretrained URL the config ships is kept (we only disabled it here)
    assert Config(path).dic['model']['backbone']['pretrained'].startswith('https://')


@pytest.mark.parametrize('path', [p for p in CONFIGS if 'resnet50_os8_cityscapes' in p or 'r50-d8' in p],
                         ids=os.path.basename)
def test_config_forward_train_and_eval(path):
    paddle.seed(0)
    model = zoo.build_model(Config(path, opts=NO_DOWNLOAD))
    x = paddle.randn([1, 3, 32, 32])
    model.train()
    out = model(x)
    assert len(out) == (2 if model.auxiliary_head is not None else 1)
    assert all(o.shape == [1, 19, 32, 32] for o in out)
    model.eval()
    with paddle.no_grad():
        out = model(x)
    assert len(out) == 1 and out[0].shape == [1, 19, 32, 32]
    assert np.isfinite(out[0].numpy()).all()


def test_output_contract_odd_size_and_aux_order():
    paddle.seed(0)
    model = tiny_deeplabv3()
    model.train()
    x = paddle.randn([2, 3, 37, 53])
    main, aux = model(x)
    assert main.shape == aux.shape == [2, 3, 37, 53]
    model.eval()
    [main] = model(x)
    assert main.shape == [2, 3, 37, 53]


@pytest.mark.parametrize('source, entry', _cases())
def test_importer_fills_model_exactly(source, entry):
    """Every tensor of the reference tree maps to exactly one of ours, shapes equal."""
    model = _lazy_model(entry['config'], [f'model.num_classes={entry["num_classes"]}'])
    sd = {k: np.zeros(s, 'float32') for k, s in entry['params'].items()}
    out = convert(model, source, sd)
    own = model.state_dict()
    assert set(out) == set(own)
    n_src = len([k for k in sd if not k.endswith('num_batches_tracked')])
    assert len(out) == n_src


R50_CASES = [c for c in _cases() if 'resnet50_os8_cityscapes' in c.id or 'r50-d8' in c.id]


@pytest.mark.parametrize('source, entry', R50_CASES)
def test_importer_is_strict(source, entry):
    model = _lazy_model(entry['config'], [f'model.num_classes={entry["num_classes"]}'])
    sd = {k: np.zeros(s, 'float32') for k, s in entry['params'].items()}
    first = sorted(k for k in sd if 'weight' in k)[0]
    with pytest.raises(CheckpointError, match='missing 1'):
        convert(model, source, {k: v for k, v in sd.items() if k != first})
    with pytest.raises(CheckpointError):
        convert(model, source, dict(sd, **{'backbone.extra_layer.weight': np.zeros([1], 'float32')}))
    cls_w = 'head.cls.weight' if source == 'paddleseg' else 'decode_head.conv_seg.weight'
    bad = dict(sd, **{cls_w: np.zeros([7] + list(sd[cls_w].shape[1:]), 'float32')})
    with pytest.raises(CheckpointError, match='shape'):
        convert(model, source, bad)


@pytest.mark.parametrize('source, entry', _cases(measured_only=True))  # the VOC rows share a tree with a measured row
def test_recorded_parity_with_reference(source, entry):
    """Measured by ``tests/manifests/deeplabv3_*.py --parity`` against the reference code.

    Target: max abs diff <= 1e-4 on 1x3x512x1024 logits. Where float32 misses it (torch vs
    Paddle kernels round differently through 100+ layers), the float64 run of both models must
    agree to 1e-6, i.e. the port computes the same function (see docs/weights.md).
    """
    p = entry['parity']
    assert p['input'] == [1, 3, 512, 1024]
    assert p['argmax_agreement'] >= 0.999
    if p['max_abs_diff'] > 1e-4 or p.get('aux_max_abs_diff', 0.0) > 1e-4:
        assert 'parity_float64' in entry, 'float32 parity misses 1e-4 and there is no float64 run'
        assert entry['parity_float64']['max_abs_diff'] <= 1e-6
        assert entry['parity_float64'].get('aux_max_abs_diff', 0.0) <= 1e-6


@pytest.mark.parametrize('source', ['mmseg', 'paddleseg'])
def test_our_model_reproduces_reference_stored_outputs(source):
    """Our model built from the config, with the reference's seeded weights through the importer,
    on the stored 1x3x128x128 input: the reference's logits (float64, 1e-9 of their magnitude);
    mmseg's auxiliary head too. (PaddleSeg concatenates the image pool last: the importer's
    reordering of the projection weight is exercised here.)"""
    inputs, outputs, meta = stored(f'deeplabv3_{source}')
    cfg = Config(os.path.join(ROOT, meta['config']), opts=NO_DOWNLOAD + [f'model.num_classes={meta["num_classes"]}'])
    model = load_reference_weights(float64_model(zoo.build_model, cfg), meta, source)
    x = to_tensor(inputs['image'])
    with paddle.no_grad():
        feats = model.backbone(x)
        ours = {'decode_head': resize(model.decode_head(feats), input_hw(x))}
        if model.auxiliary_head is not None:
            ours['auxiliary_head'] = resize(model.auxiliary_head(feats), input_hw(x))
        if source == 'paddleseg':
            ours = {'logits': ours['decode_head']}
        assert_outputs(outputs, ours)
        np.testing.assert_array_equal(model(x)[0].numpy(), ours.get('logits', ours.get('decode_head')).numpy())


def test_paddleseg_projection_reordered_to_pool_first():
    """PaddleSeg concatenates [rate branches..., image pool]; ours puts the pool first."""
    from zoo.models.deeplabv3 import _projection_pool_first
    c, n = 2, 3
    w = np.concatenate([np.full((5, c, 1, 1), i, 'float32') for i in range(n + 1)], axis=1)  # blocks 0,1,2,pool=3
    out = _projection_pool_first(w, c, n)
    assert out[0, :, 0, 0].tolist() == [3, 3, 0, 0, 1, 1, 2, 2]


def test_paddleseg_import_is_functionally_exact():
    """Our model with PaddleSeg-ordered weights equals a hand-written PaddleSeg-order ASPP."""
    paddle.seed(0)
    model = tiny_deeplabv3(aux=False)
    model.eval()
    head = model.decode_head
    x = paddle.randn([1, 3, 32, 32])
    with paddle.no_grad():
        feat = model.backbone(x)[3]
        outs = [b(feat) for b in head.aspp_modules]
        pooled = head.image_pool(feat).expand_as(outs[0])
        # PaddleSeg order: branches then pool; reorder the projection weight the other way
        w = head.bottleneck.conv.weight.numpy()
        c = outs[0].shape[1]
        w_pdseg = np.concatenate([w[:, c:], w[:, :c]], axis=1)
        proj = F.conv2d(paddle.concat(outs + [pooled], axis=1), paddle.to_tensor(w_pdseg), head.bottleneck.conv.bias)
        proj = F.relu(head.bottleneck.bn(proj))
        ref = head.conv_seg(proj)
        ours = head([None, None, None, feat])
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=1e-5)
    from zoo.models.deeplabv3 import _projection_pool_first
    np.testing.assert_array_equal(_projection_pool_first(w_pdseg, c, len(outs)), w)


def test_bad_model_options_raise_config_error():
    backbone = ResNet(depth=18, stem_channels=16, base_channels=8)
    with pytest.raises(ConfigError, match='auxiliary_head.chanels'):
        DeepLabV3(3, backbone, auxiliary_head={'chanels': 8})
    with pytest.raises(ConfigError, match='backbone_indices'):
        DeepLabV3(3, backbone, backbone_indices=[2, 3])
    with pytest.raises(ConfigError, match='in_channels'):
        DeepLabV3(3, backbone, auxiliary_head={'in_index': 2, 'in_channels': 1024})
    with pytest.raises(ConfigError, match=r'^model\.auxiliary_head\.num_convs: '):
        DeepLabV3(3, backbone, auxiliary_head={'num_convs': -1})


def test_sgd_steps_lower_the_loss():
    paddle.seed(0)
    np.random.seed(0)
    model = tiny_deeplabv3(num_classes=3)
    model.train()
    x = paddle.randn([2, 3, 32, 32])
    label = np.zeros((2, 32, 32), 'int64')
    label[:, 8:24, 8:24] = 1
    label[:, :, 28:] = 2
    label = paddle.to_tensor(label)
    opt = paddle.optimizer.Momentum(learning_rate=0.1, momentum=0.9, parameters=model.parameters())

    def loss_fn():
        main, aux = model(x)
        return F.cross_entropy(main, label, axis=1) + 0.4 * F.cross_entropy(aux, label, axis=1)

    losses = []
    for _ in range(20):   # 10 steps gave 29 % here (Paddle 3.2.2), on the edge of the 30 % asked below
        loss = loss_fn()
        loss.backward()
        opt.step()
        opt.clear_grad()
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses
