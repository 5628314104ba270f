"""ResNeSt backbone (MCIBI's S-101-D8): the sssegmentation module tree, split attention,
strides/dilations, forward/backward, ImageNet weight renames, export with dynamic H, W."""
import glob
import json
import os

import numpy as np
import paddle
import pytest

import zoo
from _parity import assert_outputs, float64_model, load_reference_weights, stored, to_tensor
from zoo.export import without_pretrained
from zoo.models.backbones.resnest import ResNeSt, ResNeStBottleneck, SplitAttentionConv2D
from zoo.models.backbones.resnet import ResNet, torch_imagenet_key
from zoo.models.convert import load_weights
from zoo.models.mcibi import sssegmentation_key
from zoo.models.weights import lookup_weights
from zoo.utils.config import Config
from zoo.utils.errors import ConfigError
from zoo.utils.registry import BACKBONES

MANIFEST = os.path.join(os.path.dirname(__file__), 'manifests', 'mcibi_backbones_sssegmentation.json')


@pytest.fixture(scope='module')
def manifest():
    with open(MANIFEST) as f:
        return json.load(f)


def tiny(**kw):
    """ResNeSt-50 tree at 1/8 width: same layout, fast."""
    return ResNeSt(depth=50, stem_channels=16, base_channels=8, **kw)


def renamed(model, names):
    """{our key: value} of an OpenMMLab-named ImageNet state dict, through ResNet's importer."""
    out = {}
    for k, v in names.items():
        new = torch_imagenet_key(k, model)
        if new is not None:
            out[new] = v
    return out


def test_registered_and_a_block_of_resnet():
    assert BACKBONES.get('ResNeSt') is ResNeSt
    with paddle.LazyGuard():
        m = ResNeSt(depth=50)
    # one trunk: ResNeSt is ResNet's stem, stages and forward with the split-attention block
    assert type(m) is ResNet and all(isinstance(b, ResNeStBottleneck) for b in m.layer3)


def test_sssegmentation_resnest101_fills_ours_exactly(manifest):
    ref = manifest['models']['ResNeSt-101-D8']
    with paddle.LazyGuard():
        m = ResNeSt(depth=101, output_stride=8)
    ours = {k: list(v.shape) for k, v in m.state_dict().items()}
    converted = renamed(m, ref)   # values are shapes here: the rename is what is checked
    assert converted == ours
    assert m.feat_channels == [256, 512, 1024, 2048]
    # deep stem 64-64-128, split attention radix 2: conv -> 2 x width, fc1 >= 32 channels
    assert ours['stem.0.weight'][0] == 64 and ours['stem.6.weight'][0] == 128
    assert ours['layer1.0.conv2.conv.weight'] == [128, 32, 3, 3]
    assert ours['layer1.0.conv2.fc1.weight'] == [32, 64, 1, 1]


def test_parity_with_sssegmentation_recorded(manifest):
    p = manifest['parity']['ResNeSt-101-D8']
    assert p['input'] == [1, 3, 512, 512]
    assert p['outputs'] == [[1, 256, 128, 128], [1, 512, 64, 64], [1, 1024, 64, 64], [1, 2048, 64, 64]]
    # float32 through 33 blocks at 512x512: ~5e-4 on features of magnitude ~10 (relative 5e-5);
    # in float64 the two agree to rounding, so the mapping itself is exact
    assert all(d <= 1e-4 * r for d, r in zip(p['max_abs_diff'], p['max_abs_ref']))
    assert max(p['float64_1x3x96x96_max_abs_diff']) <= 1e-6


def test_our_backbone_reproduces_sssegmentation_stored_outputs():
    """Ours (ResNeSt-101, output stride 8), with sssegmentation's seeded weights through ResNet's
    importer, on the stored input: its four stage outputs (float64, 1e-9 of their magnitude)."""
    inputs, outputs, meta = stored('mcibi_backbones_sssegmentation')
    model = load_reference_weights(float64_model(ResNeSt, depth=101, output_stride=8), meta, 'mmseg',
                                   key='resnest101')
    with paddle.no_grad():
        feats = model(to_tensor(inputs['resnest101']))
    assert_outputs({k: v for k, v in outputs.items() if k.startswith('resnest101/')},
                   {f'resnest101/{i}': f for i, f in enumerate(feats)})


def test_os8_layout_contract_dilation_and_avg_after_conv():
    with paddle.LazyGuard():
        m = ResNeSt(depth=101, output_stride=8)
    b = m.layer2[0]
    # the strided block: split-attention conv at stride 1, then a 3x3 stride-2 avg pool
    # that counts the padding (torch count_include_pad=True)
    assert list(b.conv2.conv._stride) == [1, 1] and b.use_avg_after_conv2
    assert b.avg_layer.ksize == 3 and b.avg_layer.stride == 2 and b.avg_layer.exclusive is False
    # shortcut: avg pool 2x2 then 1x1 conv (ResNet-D)
    assert b.downsample[0].ksize == 2 and list(b.downsample[1]._stride) == [1, 1]
    # contract dilation: stage 3 = 1, 2, 2..., stage 4 = 2, 4, 4
    assert [blk.conv2.conv._dilation[0] for blk in m.layer3][:3] == [1, 2, 2]
    assert [blk.conv2.conv._dilation[0] for blk in m.layer4] == [2, 4, 4]
    assert not m.layer3[0].use_avg_after_conv2 and not m.layer4[0].use_avg_after_conv2


def test_split_attention_weights_are_a_softmax_over_radix():
    paddle.seed(0)
    sa = SplitAttentionConv2D(8, 8, radix=2, groups=1)
    att = sa.r_softmax(paddle.randn([3, 16, 1, 1]))
    assert att.shape == [3, 2, 8]
    np.testing.assert_allclose(att.sum(axis=1).numpy(), np.ones((3, 8)), rtol=1e-6)
    # with cardinal groups the reference views channels as (groups, radix, C / groups)
    sa = SplitAttentionConv2D(8, 8, radix=2, groups=2)
    x = paddle.randn([1, 16, 1, 1])
    att = sa.r_softmax(x).numpy()[0]                      # [radix, C]
    v = x.numpy().reshape(2, 2, 4)                         # [groups, radix, C/groups]
    e = np.exp(v) / np.exp(v).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(att, e.transpose(1, 0, 2).reshape(2, 8), rtol=1e-5)


def test_forward_backward_tiny():
    paddle.seed(0)
    m = tiny()
    m.train()
    x = paddle.randn([2, 3, 40, 40])
    feats = m(x)
    # output stride 8; 40 -> 20 (stem) -> 10 (max pool) -> 5 (stage 2: ceil, avg pool with padding)
    assert [f.shape for f in feats] == [[2, 32, 10, 10], [2, 64, 5, 5], [2, 128, 5, 5], [2, 256, 5, 5]]
    sum(f.mean() for f in feats).backward()
    missing = [n for n, p in m.named_parameters() if not p.stop_gradient and p.grad is None]
    assert not missing, missing[:5]


def test_bad_options_raise_config_error():
    with pytest.raises(ConfigError, match='depth'):
        ResNeSt(depth=34)
    with pytest.raises(ConfigError, match='output_stride'):
        ResNeSt(depth=50, output_stride=4)


def test_imagenet_converter_and_pretrained_loading(tmp_path):
    row = lookup_weights('resnest101_d2')
    assert row.url.endswith('resnest101_d2-f3b931b2.pth') and row.sha256 == 'f3b931b2' and row.model == 'ResNet'
    assert lookup_weights(row.url) is row
    paddle.seed(1)
    src = tiny()
    torch_names = {}
    for k, v in src.state_dict().items():   # torch names, as the OpenMMLab file, + classifier
        k = k.replace('._mean', '.running_mean').replace('._variance', '.running_var')
        torch_names['backbone.' + k] = v.numpy()
    torch_names['backbone.fc.weight'] = np.zeros((10, 256), 'float32')
    path = str(tmp_path / 'resnest.pdparams')
    paddle.save(torch_names, path)
    dst = tiny(pretrained=path)
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[k].numpy(), v.numpy())
    # the original ResNeSt release's stem names
    orig = renamed(dst, {'conv1.0.weight': 1, 'conv1.4.weight': 2, 'bn1.running_mean': 3, 'layer1.0.bn1.weight': 4})
    assert orig == {'stem.0.weight': 1, 'stem.4.weight': 2, 'stem.7._mean': 3, 'layer1.0.bn1.weight': 4}
    loaded = load_weights(tiny(), path, strict=False)
    assert not loaded.missing and not loaded.unexpected and 'fc.weight' in loaded.dropped  # ImageNet classifier


def test_export_dynamic_hw(tmp_path):
    """Stem + a strided split-attention block (avg pool, avg-pool shortcut) export with dynamic
    H, W and match dygraph (the whole network is exported by tests/test_export.py's configs)."""
    paddle.seed(0)
    m = ResNeSt(depth=50, stem_channels=8, base_channels=4)
    part = paddle.nn.Sequential(m.stem, m.maxpool, m.layer1, m.layer2[0])
    part.eval()
    static = paddle.jit.to_static(part, input_spec=[paddle.static.InputSpec([None, 3, None, None], 'float32')],
                                  full_graph=True)
    path = str(tmp_path / 'model')
    paddle.jit.save(static, path)
    loaded = paddle.jit.load(path)
    for hw in ((32, 48), (41, 33)):
        x = paddle.randn([1, 3, *hw])
        np.testing.assert_allclose(loaded(x).numpy(), part(x).numpy(), atol=1e-5)


# -- the MCIBI S-101-D8 configs -------------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'configs', 'mcibi', 'mcibi_s101-d8_*.yml')))
# dataset: classes, lr, weight decay, end lr, iters, memory base lr, memory loss, total batch
RECIPES = {
    'cocostuff10k': (182, 0.001, 5.0e-4, 1.0e-4, 42150, 9.0e-4, False, 32),
    'ade20k': (150, 0.004, 5.0e-4, 4.0e-5, 227340, 0.004, True, 16),
    'cityscapes': (19, 0.01, 5.0e-4, 1.0e-4, 108500, 9.0e-3, False, 16),
    'lip': (20, 0.007, 5.0e-4, 7.0e-5, 114150, 0.007, False, 40),
}


def sssegmentation_mcibi_names(backbone_names, aux=True, extra=()):
    """Key names of a whole sssegmentation MCIBI checkpoint with this backbone."""
    with open(os.path.join(os.path.dirname(__file__), 'manifests', 'mcibi_sssegmentation.json')) as f:
        head = [k for k in json.load(f)['models']['R-101-D8'] if not k.startswith('backbone_net.')]
    names = ['backbone_net.' + k for k in backbone_names] + list(extra)
    names += [k for k in head if aux or not k.startswith('auxiliary_decoder.')]
    return names


def test_configs_recipes_build_and_take_sssegmentation_checkpoints(manifest):
    assert len(CONFIGS) == 4
    for path in CONFIGS:
        cfg = Config(path)
        ds = os.path.basename(path).split('_')[2]
        classes, lr, wd, end_lr, iters, mem_lr, mem_loss, total_batch = RECIPES[ds]
        d, m = cfg.dic, cfg.dic['model']
        assert (m['num_classes'], m['memory_base_lr'], m['use_memory_loss']) == (classes, mem_lr, mem_loss)
        assert m['act'] == 'relu'
        assert d['lr_scheduler']['learning_rate'] == lr and d['lr_scheduler']['end_lr'] == pytest.approx(end_lr)
        assert d['optimizer']['weight_decay'] == wd and d['iters'] == iters and d['batch_size'] * 8 == total_batch
        assert d['loss']['coef'] == [1.0, 0.4, 0.4] + ([1.0] if mem_loss else [])
        assert m['backbone']['pretrained'] == lookup_weights('resnest101_d2').url
        with paddle.LazyGuard():
            model = zoo.build_model(without_pretrained(cfg))
        assert isinstance(model.backbone.layer1[0], ResNeStBottleneck)
        assert model.backbone.feat_channels == [256, 512, 1024, 2048]
        names = sssegmentation_mcibi_names(manifest['models']['ResNeSt-101-D8'])
        ours = {sssegmentation_key(k) for k in names} - {None}
        assert ours == set(model.state_dict())


def test_config_forward_backward_with_a_narrow_trunk():
    """The ADE20K config (memory loss on) with a 1/8-width ResNeSt-50 trunk: same code paths."""
    cfg = without_pretrained(Config([p for p in CONFIGS if 'ade20k' in p][0])).dic
    m = cfg['model']
    m['backbone'].update(depth=50, stem_channels=16, base_channels=8)
    m.update(num_classes=6, in_channels=256, aux_in_channels=128, feats_channels=16, transform_channels=8,
             out_channels=16, aux_channels=16, memory_loss_start_iter=0)
    paddle.seed(0)
    model = zoo.build_model(Config(cfg))
    model.train()
    outs = model(paddle.randn([2, 3, 48, 48]))
    assert model.output_names == ['stage2', 'stage1', 'aux', 'memory']
    assert [o.shape for o in outs[:3]] == [[2, 6, 48, 48]] * 3
    sum(o.mean() for o in outs[:3]).backward()
    assert model.backbone.layer4[0].conv2.fc1.weight.grad is not None
