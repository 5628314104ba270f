"""DMNet: the per-sample dynamic depthwise convolution, mmseg checkpoint import (names and
shapes of the real R-50/R-101-D8 models, values, ``pretrained``), the twelve configs against
mmsegmentation's recipes, every config's forward/backward, and export parity with Paddle
Inference (oneDNN) at batch 1 and 2.

``tests/manifests/dmnet_mmseg.json`` is written by ``tests/manifests/dmnet_mmseg.py``
(mmsegmentation 1.2.2 + torch, run outside the test suite); no torch is needed here.
"""
import glob
import json
import os

import numpy as np
import paddle
import pytest

import zoo
from zoo.export import export_model, find_program, without_pretrained
from _parity import assert_outputs, float64_model, load_reference_weights, stored, to_tensor
from zoo.models.backbones.resnet import ResNet, ResNetV1c
from zoo.models.convert import convert
from zoo.models.dmnet import DMNet
from zoo.models.heads.dm_head import (DMHead, depthwise_conv_grouped_over_batch,
                                      depthwise_conv_grouped_over_channels, same_padding)
from zoo.models.layers import input_hw, resize
from zoo.utils.config import Config
from zoo.utils.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(REPO, 'tests', 'manifests', 'dmnet_mmseg.json')) as f:
    MANIFEST = json.load(f)
# the configs reproducing mmseg's rows (``*_custom_*``: a user's data, tests/test_custom_dataset.py)
CONFIGS = sorted(p for p in glob.glob(os.path.join(REPO, 'configs', 'dmnet', '*.yml')) if '_custom_' not in p)


def naive_per_sample_depthwise(x, w):
    """Direct loops: sample n, channel c convolved with w[n, c], mmseg's (asymmetric) zero pad."""
    n, c, h, wd = x.shape
    k = w.shape[-1]
    top, bottom, left, right = same_padding(k)
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(k):
        for j in range(k):
            out += xp[:, :, i:i + h, j:j + wd] * w[:, :, i:i + 1, j:j + 1]
    return out


@pytest.mark.parametrize('k', [1, 3, 4, 7])
@pytest.mark.parametrize('n', [1, 3])
def test_both_depthwise_forms_equal_direct_loops(k, n):
    rng = np.random.RandomState(k * 10 + n)
    x = rng.randn(n, 5, 9, 11).astype('float32')
    w = rng.randn(n, 5, k, k).astype('float32')
    ref = naive_per_sample_depthwise(x, w)
    for form in (depthwise_conv_grouped_over_batch, depthwise_conv_grouped_over_channels):
        out = form(paddle.to_tensor(x), paddle.to_tensor(w), same_padding(k)).numpy()
        assert out.shape == x.shape, form.__name__
        np.testing.assert_allclose(out, ref, atol=1e-4, err_msg=f'{form.__name__} k={k} n={n}')


def test_align_corners_resize_equals_bilinear_interpolate():
    """layers.resize computes align_corners=True by two matmuls (what oneDNN gets right)."""
    x = paddle.randn([2, 3, 9, 13])
    for size in ([72, 104], [33, 37], [9, 13], [5, 4]):
        ref = paddle.nn.functional.interpolate(x, size=size, mode='bilinear', align_corners=True).numpy()
        for given in (size, paddle.to_tensor(size)):
            out = resize(x, given, align_corners=True).numpy()
            np.testing.assert_allclose(out, ref, atol=1e-5, err_msg=str(size))
    ref = paddle.nn.functional.interpolate(x, scale_factor=2, mode='bilinear', align_corners=True).numpy()
    np.testing.assert_allclose(resize(x, scale_factor=2, align_corners=True).numpy(), ref, atol=1e-5)


def test_filters_are_per_sample():
    """A sample's output must not depend on the other samples of the batch."""
    paddle.seed(0)
    head = DMHead(16, 8, 3, filter_sizes=(1, 3))
    head.eval()
    x = paddle.randn([2, 16, 7, 9])
    with paddle.no_grad():
        both = head(x).numpy()
        alone = head(x[1:]).numpy()
        swapped = head(paddle.concat([x[1:], x[:1]])).numpy()
    np.testing.assert_allclose(both[1:], alone, atol=1e-5)
    np.testing.assert_allclose(both[::-1], swapped, atol=1e-5)


# -- mmseg checkpoint import -----------------------------------------------------------

def mmseg_shapes(depth, num_classes=19):
    out = {}
    for k, shape in MANIFEST['models'][f'r{depth}']:
        if k.endswith('conv_seg.weight') or k.endswith('conv_seg.bias'):
            shape = [num_classes] + shape[1:]
        out[k] = shape
    return out


def config_num_classes(path):
    cfg = Config(path)
    return cfg.get('model.num_classes') or zoo.builder.dataset_num_classes(cfg)


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_mmseg_names_and_shapes_fill_each_config_model(path):
    """Every config builds the full-size model of its mmseg row: the recorded mmseg state dict
    (R-50 or R-101, the config's classes) fills it exactly after the import rename."""
    depth = Config(path).get('model.backbone.depth')
    with paddle.LazyGuard():  # names and shapes only: skip initializing ~60M parameters
        model = zoo.build_model(without_pretrained(Config(path)))
    # zero-strided stand-ins: the recorded shapes without allocating the tensors
    shapes = mmseg_shapes(depth, config_num_classes(path))
    src = {k: np.broadcast_to(np.float32(0), shape) for k, shape in shapes.items()}
    converted = convert(model, 'mmseg', src)  # every parameter/buffer filled, names and shapes exact
    assert len(converted) == len([k for k in src if not k.endswith('num_batches_tracked')])


def tiny_dmnet(aux=True, num_classes=5):
    backbone = ResNet(depth=18, deep_stem=True, stem_channels=16, base_channels=8, strides=(1, 2, 1, 1),
                      dilations=(1, 1, 2, 4), contract_dilation=True)
    return DMNet(num_classes, backbone, channels=16, aux_channels=8, enable_auxiliary_loss=aux)


def as_mmseg(state_dict, seed=0):
    """Our state dict renamed to mmseg's names, with fresh random values."""
    rng = np.random.RandomState(seed)
    out = {}
    for k, v in state_dict.items():
        k = k.replace('._mean', '.running_mean').replace('._variance', '.running_var')
        out[k] = rng.uniform(0.5, 1.5, v.shape).astype('float32')
        if k.endswith('.running_var'):
            out[k.replace('running_var', 'num_batches_tracked')] = np.array(100, 'int64')
    return out


def test_mmseg_import_moves_every_value_and_drops_aux_without_aux_head():
    paddle.seed(0)
    full = tiny_dmnet()
    src = as_mmseg(full.state_dict())
    full.set_state_dict(convert(full, 'mmseg', src))
    for k, v in full.state_dict().items():
        mm = k.replace('._mean', '.running_mean').replace('._variance', '.running_var')
        np.testing.assert_array_equal(v.numpy(), src[mm], err_msg=k)
    no_aux = tiny_dmnet(aux=False)
    converted = convert(no_aux, 'mmseg', src)  # mmseg checkpoints always carry auxiliary_head.*
    assert not any(k.startswith('auxiliary_head.') for k in converted)


def test_pretrained_accepts_an_mmseg_checkpoint(tmp_path):
    paddle.seed(0)
    src = as_mmseg(tiny_dmnet().state_dict(), seed=3)
    path = str(tmp_path / 'mmseg_dmnet.pdparams')
    paddle.save({k: paddle.to_tensor(v) for k, v in src.items()}, path)
    for aux in (True, False):  # inference-only models skip the checkpoint's auxiliary head
        model = DMNet(5, tiny_dmnet().backbone, channels=16, aux_channels=8, enable_auxiliary_loss=aux,
                      pretrained=path)
        np.testing.assert_array_equal(model.decode_head.bottleneck.bn._variance.numpy(),
                                      src['decode_head.bottleneck.bn.running_var'])
        np.testing.assert_array_equal(model.backbone.stem[0].weight.numpy(), src['backbone.stem.0.weight'])


def test_import_parity_with_mmseg_was_measured():
    """Recorded by the manifest script: mmseg's own DMHead / DMNet vs ours after conversion."""
    p = MANIFEST['parity']
    assert p['dmhead_1x2048x64x128']['max_abs_diff'] <= 1e-4  # stride-8 features of 1x3x512x1024
    assert p['dmhead_2x2048x24x40']['max_abs_diff'] <= 1e-4
    assert p['dmhead_even_filters_2x64x13x17']['max_abs_diff'] <= 1e-4
    full = p['dmnet_r50_d8_1x3x512x1024']
    assert full['head_on_mmseg_features_max_abs_diff'] <= 1e-4
    assert full['max_abs_diff'] <= 1e-3 * full['max_abs_ref'] and full['argmax_agreement'] > 0.999


def test_our_model_reproduces_mmseg_stored_outputs():
    """Ours, with mmseg's seeded R-50-D8 weights through the importer, on the stored batch of 2:
    the decode and auxiliary logits equal mmseg's (float64, 1e-9 of their magnitude); so does
    the DMHead with even filter sizes (asymmetric padding)."""
    inputs, outputs, meta = stored('dmnet_mmseg')
    model = float64_model(lambda: DMNet(meta['num_classes'], ResNetV1c(
        depth=50, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), contract_dilation=True)))
    model = load_reference_weights(model, meta, 'mmseg')
    head = float64_model(DMHead, 64, 32, 19, filter_sizes=(2, 4, 6), in_index=3)
    head = load_reference_weights(head, meta, None, key='head/even_filters')
    x = to_tensor(inputs['image'])
    with paddle.no_grad():
        feats = model.backbone(x)
        ours = {'decode_head': resize(model.decode_head(feats), input_hw(x)),
                'auxiliary_head': resize(model.auxiliary_head(feats), input_hw(x)),
                'head/even_filters': head([to_tensor(inputs['head/even_filters'])] * 4)}
        assert_outputs(outputs, ours)
        np.testing.assert_array_equal(model(x)[0].numpy(), ours['decode_head'].numpy())


def test_bad_arguments_fail_in_one_line():
    backbone = ResNet(depth=18, deep_stem=True, stem_channels=16, base_channels=8)
    with pytest.raises(ConfigError, match='backbone_indices'):
        DMNet(3, backbone, backbone_indices=[3])
    with pytest.raises(ConfigError, match='backbone_indices'):
        DMNet(3, backbone, backbone_indices=[2, 4])
    with pytest.raises(ConfigError, match='filter_sizes'):
        DMHead(8, 4, 3, filter_sizes=[])
    with pytest.raises(ConfigError, match='model.backbone'):
        DMNet(3, {'type': 'ResNetV1c'})


# -- the twelve configs ----------------------------------------------------------------

def mmseg_name(path):
    """dmnet_r50-d8_cityscapes_512x1024_40k -> dmnet_r50-d8_4xb2-40k_cityscapes-512x1024."""
    stem = os.path.basename(path)[:-4]
    arch, dataset, crop, iters = stem.rsplit('_', 3)
    gpus = '4xb2' if dataset == 'cityscapes' else '4xb4'
    return f'{arch}_{gpus}-{iters}_{dataset}-{crop}'


def test_there_are_twelve_configs_one_per_mmseg_row():
    assert sorted(mmseg_name(p) for p in CONFIGS) == sorted(MANIFEST['configs'])


def _transform(cfg, split, name):
    found = [t for t in cfg.get(f'{split}_dataset.transforms') if t['type'] == name]
    return found[0] if found else None


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_reproduces_the_mmseg_recipe(path):
    ref = MANIFEST['configs'][mmseg_name(path)]
    cfg = zoo.validate_config(path)
    model = cfg.dic['model']
    assert model['type'] == 'DMNet'
    assert model['backbone']['depth'] == ref['depth']
    name = ref['pretrained'].split('://')[1]  # open-mmlab://resnet50_v1c -> resnet50_v1c
    assert f'/{name}-' in model['backbone']['pretrained']
    assert model['backbone']['strides'] == [1, 2, 1, 1] and model['backbone']['dilations'] == [1, 1, 2, 4]
    assert model['backbone']['contract_dilation'] is True
    assert model.get('num_classes', zoo.builder.dataset_num_classes(cfg)) == ref['num_classes']
    assert model['align_corners'] == ref['align_corners']
    assert cfg.dic['loss']['coef'] == [1, ref['aux_loss_weight']]
    assert cfg.iters == ref['iters'] and cfg.batch_size == ref['batch_per_gpu']
    opt, sched = cfg.dic['optimizer'], cfg.dic['lr_scheduler']
    assert (opt['type'], opt['momentum'], opt['weight_decay']) == ('SGD', ref['momentum'], ref['weight_decay'])
    assert (sched['type'], sched['learning_rate'], sched['power'], sched['end_lr']) == (
        'PolynomialDecay', ref['lr'], ref['poly_power'], ref['poly_eta_min'])
    assert not sched.get('warmup_iters')
    crop = _transform(cfg, 'train', 'RandomCrop')
    assert list(crop['crop_size']) == ref['crop_size_hw'] and crop['cat_max_ratio'] == ref['cat_max_ratio']
    rescale = _transform(cfg, 'train', 'RandomRescale')
    assert list(rescale['scale']) == ref['scale_wh'] and list(rescale['ratio_range']) == ref['ratio_range']
    assert list(_transform(cfg, 'train', 'Pad')['size']) == ref['crop_size_hw']
    assert _transform(cfg, 'train', 'PhotoMetricDistortion') is not None
    test = cfg.test_config
    if ref['test_mode'] == 'slide':  # ours is PaddleSeg's [w, h], mmseg's (h, w): square here
        assert test['is_slide'] and test['crop_size'] == ref['test_crop_size_hw'][::-1]
        assert test['stride'] == ref['test_stride_hw'][::-1]
    else:
        assert not test.get('is_slide')
    if 'ade20k' in path:
        assert cfg.get('train_dataset.type') == 'ADE20K'  # reduce_zero_label is built into ADE20K


def test_full_size_r50_config_trains_and_evaluates():
    """The full-size R-50-D8 model of a 769x769 config (align_corners true): train-mode forward
    (batch 2) + backward reaching the DCM filter generators, the heads and the stem; eval forward
    (batch 1, odd size). The other configs differ in depth / classes / align_corners only (their
    structure is checked against mmseg above; the export test runs the align_corners=False path
    of the deploy parity suite)."""
    path = os.path.join(REPO, 'configs', 'dmnet', 'dmnet_r50-d8_cityscapes_769x769_80k.yml')
    paddle.seed(0)
    model = zoo.build_model(without_pretrained(Config(path)))
    num_classes = config_num_classes(path)
    model.train()
    x = paddle.uniform([2, 3, 48, 40], min=-2, max=2)
    outs = model(x)
    assert [o.shape for o in outs] == [[2, num_classes, 48, 40]] * 2
    (outs[0].mean() + 0.4 * outs[1].mean()).backward()
    for name in ('decode_head.dcm_modules.3.filter_gen_conv.weight', 'decode_head.conv_seg.weight',
                 'auxiliary_head.conv_seg.weight', 'backbone.stem.0.weight'):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name
    model.clear_gradients()
    model.eval()
    with paddle.no_grad():
        outs = model(x[:1, :, :33, :37])
    assert len(outs) == 1 and outs[0].shape == [1, num_classes, 33, 37]
    assert np.isfinite(outs[0].numpy()).all()


# -- export: dygraph vs Paddle Inference (oneDNN) ----------------------------------------

def _calibrate(model, shape=(2, 3, 64, 64)):
    """Random nets blow up in eval mode unless BN statistics match: one momentum-0 pass."""
    bns = [m for m in model.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    for m in bns:
        m._momentum = 0.0
    model.train()
    with paddle.no_grad():
        model(paddle.uniform(list(shape), min=-2, max=2))
    for m in bns:
        m._momentum = 0.9
    model.eval()


def _predictor(model_dir):
    from paddle import inference
    cfg = inference.Config(os.path.join(model_dir, find_program(model_dir)), os.path.join(model_dir, 'model.pdiparams'))
    cfg.enable_mkldnn()
    cfg.set_cpu_math_library_num_threads(2)
    cfg.disable_glog_info()
    return inference.create_predictor(cfg)


def _run(pred, x):
    h = pred.get_input_handle(pred.get_input_names()[0])
    h.reshape(list(x.shape))
    h.copy_from_cpu(x)
    pred.run()
    return pred.get_output_handle(pred.get_output_names()[0]).copy_to_cpu()


def test_export_matches_dygraph_at_batch_1_and_2(tmp_path):
    """Dynamic batch/H/W export: the static graph takes the grouped-over-channels form, dygraph
    the grouped-over-batch form; Paddle Inference with oneDNN must give dygraph's logits. With
    align_corners=True (the 769x769 configs), the path oneDNN's bilinear_interp gets wrong."""
    align_corners = True
    paddle.seed(1)
    backbone = {'type': 'ResNet', 'depth': 18, 'deep_stem': True, 'stem_channels': 16, 'base_channels': 8,
                'strides': [1, 2, 1, 1], 'dilations': [1, 1, 2, 4], 'contract_dilation': True}
    cfg = Config({'model': {'type': 'DMNet', 'num_classes': 5, 'backbone': backbone, 'channels': 16,
                            'aux_channels': 8, 'filter_sizes': [1, 3, 4, 7], 'align_corners': align_corners},
                  'val_dataset': {'type': 'Dataset', 'dataset_root': '.', 'num_classes': 5,
                                  'transforms': [{'type': 'Normalize'}]}})
    model = zoo.build_model(cfg)
    _calibrate(model)
    weights = str(tmp_path / 'model.pdparams')
    paddle.save(model.state_dict(), weights)
    export_model(cfg, str(tmp_path / 'export'), model_path=weights, output_op='none')
    pred = _predictor(str(tmp_path / 'export'))
    rng = np.random.RandomState(0)
    for shape in [(1, 3, 64, 96), (2, 3, 67, 101), (3, 3, 40, 36)]:
        x = rng.uniform(-2, 2, shape).astype('float32')
        with paddle.no_grad():
            ref = model(paddle.to_tensor(x))[0].numpy()
        out = _run(pred, x)
        assert out.shape == ref.shape
        tol = 1e-4 * float(ref.max() - ref.min())
        assert float(np.abs(out - ref).max()) <= tol, shape
