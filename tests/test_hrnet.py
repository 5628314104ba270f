"""HRNetV2 backbone (MCIBI's HRNetV2p-W48): the sssegmentation module tree, the 720-channel
1/4 output, ``mcibi_version`` and MCIBI's downsample conv, ImageNet renames, export."""
import glob
import json
import os

import numpy as np
import paddle
import pytest

import zoo
from _parity import assert_outputs, float64_model, load_reference_weights, reference_weights, stored, to_tensor
from zoo.export import without_pretrained
from zoo.models.backbones.hrnet import HRNet, torch_imagenet_key
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


def test_registered():
    assert BACKBONES.get('HRNet') is HRNet


def test_sssegmentation_w48_fills_ours_exactly(manifest):
    ref = dict(manifest['models']['HRNetV2-W48'])
    ref.update({'downsample_backbone.' + k: v for k, v in manifest['models']['MCIBI.downsample_backbone(720)'].items()})
    with paddle.LazyGuard():
        m = HRNet(arch='hrnetv2_w48', mcibi_version=True, downsample_stride=2)
    ours = {k: list(v.shape) for k, v in m.state_dict().items()}
    assert {torch_imagenet_key(k, m): v for k, v in ref.items() if torch_imagenet_key(k, m)} == ours
    assert m.feat_channels == [48 + 96 + 192 + 384]
    # 4 / 1 / 4 / 3 modules, four BasicBlocks per branch
    assert len(m.stage2) == 1 and len(m.stage3) == 4 and len(m.stage4) == 3
    assert len(m.stage4[2].branches[3]) == 4 and ours['stage4.2.branches.3.0.conv1.weight'] == [384, 384, 3, 3]
    assert ours['downsample_backbone.0.weight'] == [720, 720, 3, 3]


def test_parity_with_sssegmentation_recorded(manifest):
    p = manifest['parity']['HRNetV2-W48']
    assert p['hrnetv2_w48']['outputs'] == [[1, 720, 128, 128]]
    assert max(p['hrnetv2_w48']['max_abs_diff']) <= 1e-4
    assert max(p['float64_1x3x96x96_max_abs_diff']) <= 1e-6
    q = p['hrnetv2_w48_mcibi_version_downsample2']
    assert q['input'] == [1, 3, 512, 1024] and q['outputs'] == [[1, 720, 64, 128]]
    assert max(q['max_abs_diff']) <= 1e-4


def test_our_backbone_reproduces_sssegmentation_stored_outputs():
    """Ours (HRNetV2-W48; and with ``mcibi_version`` + MCIBI's downsample conv), with
    sssegmentation's seeded weights through the importer, on the stored inputs: its outputs
    (float64, 1e-9 of their magnitude)."""
    inputs, outputs, meta = stored('mcibi_backbones_sssegmentation')
    model = load_reference_weights(float64_model(HRNet, arch='hrnetv2_w48'), meta, 'mmseg', key='hrnetv2_w48')
    with paddle.no_grad():
        ours = {'hrnetv2_w48/0': model(to_tensor(inputs['hrnetv2_w48']))[0]}
    key = 'hrnetv2_w48_mcibi_version_downsample2'
    # the reference wraps the backbone as ``backbone.*`` next to the segmentor's ``downsample_backbone.*``
    sd = {(k[len('backbone.'):] if k.startswith('backbone.') else k): v for k, v in reference_weights(meta, key).items()}
    model = float64_model(HRNet, arch='hrnetv2_w48', mcibi_version=True, downsample_stride=2)
    model = load_reference_weights(model, meta, 'mmseg', key=key, state_dict=sd)
    with paddle.no_grad():
        ours[f'{key}/0'] = model(to_tensor(inputs[key]))[0]
    assert_outputs({k: v for k, v in outputs.items() if k.startswith('hrnetv2_w48')}, ours)


def tiny(**kw):
    """HRNetV2-W8 with one block per branch and one module per stage: the full topology
    (4 branches, every fuse path), fast."""
    return HRNet(arch='hrnetv2_w18_small', width=8, num_blocks=1, num_modules=(1, 1, 1), stage1_blocks=1, **kw)


def test_forward_backward_odd_size():
    paddle.seed(0)
    m = tiny()
    m.train()
    out = m(paddle.randn([2, 3, 45, 37]))
    assert len(out) == 1 and out[0].shape == [2, 8 + 16 + 32 + 64, 12, 10]   # ceil(ceil(H/2)/2)
    out[0].mean().backward()
    missing = [n for n, p in m.named_parameters() if not p.stop_gradient and p.grad is None]
    assert not missing, missing[:5]


def test_mcibi_version_skips_the_first_stem_relu_and_downsample_halves():
    paddle.seed(0)
    a = tiny()
    b = tiny(mcibi_version=True, downsample_stride=2)
    sd = a.state_dict()
    b.set_state_dict({**b.state_dict(), **sd})
    a.eval()
    b.eval()
    x = paddle.randn([1, 3, 64, 64])
    stem_a = a.relu(a.bn1(a.conv1(x)))
    stem_b = b.bn1(b.conv1(x))
    assert float(stem_b.min()) < 0 <= float(stem_a.min())
    ya, yb = a(x)[0], b(x)[0]
    assert ya.shape == [1, 120, 16, 16] and yb.shape == [1, 120, 8, 8]
    assert float(yb.min()) >= 0      # the downsample conv ends in a ReLU


def test_bad_arch_raises_config_error():
    with pytest.raises(ConfigError, match='arch'):
        HRNet(arch='hrnetv2_w64')
    with pytest.raises(ConfigError, match='num_modules'):
        HRNet(num_modules=(1, 1))


def test_named_arch_overrides():
    with paddle.LazyGuard():
        m = tiny()
        w18s = HRNet(arch='hrnetv2_w18_small')
    assert m.feat_channels == [120] and len(m.stage3) == 1 and len(m.stage4[0].branches[0]) == 1
    assert w18s.feat_channels == [270] and len(w18s.stage3) == 3 and len(w18s.stage4[0].branches[0]) == 2


def test_imagenet_converter_drops_nothing_of_ours(tmp_path):
    row = lookup_weights('hrnetv2_w48')
    assert row.url.endswith('hrnetv2_w48-d2186c55.pth') and row.source == 'mmseg' and row.model == 'HRNet'
    paddle.seed(1)
    src = tiny()
    sd = {k.replace('._mean', '.running_mean').replace('._variance', '.running_var'): v.numpy()
          for k, v in src.state_dict().items()}
    sd['incre_modules.0.0.conv1.weight'] = np.zeros((32, 8, 1, 1), 'float32')  # ImageNet head
    path = str(tmp_path / 'hrnet.pdparams')
    paddle.save(sd, path)
    dst = tiny(pretrained=path)
    for k, v in src.state_dict().items():
        np.testing.assert_array_equal(dst.state_dict()[k].numpy(), v.numpy())
    loaded = load_weights(tiny(), path, strict=True)   # the ImageNet head is dropped on purpose
    assert loaded.dropped[-1] == 'incre_modules.0.0.conv1.weight'


def test_export_dynamic_hw(tmp_path):
    paddle.seed(0)
    m = tiny(downsample_stride=2)
    m.eval()
    static = paddle.jit.to_static(m, input_spec=[paddle.static.InputSpec([None, 3, None, None], 'float32')],
                                  full_graph=True)
    path = str(tmp_path / 'model')
    paddle.jit.save(static, path)
    loaded = paddle.jit.load(path)
    for hw in ((64, 96), (50, 70)):
        x = paddle.randn([1, 3, *hw])
        out = loaded(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        np.testing.assert_allclose(out.numpy(), m(x)[0].numpy(), atol=1e-4)


# -- the MCIBI HRNetV2p-W48 configs ---------------------------------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'configs', 'mcibi', 'mcibi_hrnetv2-w48_*.yml')))
# dataset: classes, lr, weight decay, iters, memory base lr, memory loss, total batch, mcibi_version, downsample
RECIPES = {
    'cocostuff10k': (182, 0.001, 1.0e-4, 61820, 9.0e-4, False, 16, False, 1),
    'ade20k': (150, 0.004, 5.0e-4, 227340, 0.004, True, 16, False, 1),
    'cityscapes': (19, 0.01, 5.0e-4, 108500, 9.0e-3, False, 16, True, 2),
    'lip': (20, 0.007, 5.0e-4, 114150, 0.007, False, 40, False, 2),
}


def test_configs_recipes_build_and_take_sssegmentation_checkpoints(manifest):
    with open(os.path.join(os.path.dirname(__file__), 'manifests', 'mcibi_sssegmentation.json')) as f:
        head = [k for k in json.load(f)['models']['R-101-D8']
                if not k.startswith(('backbone_net.', 'auxiliary_decoder.'))]   # no auxiliary decoder here
    backbone = ['backbone_net.' + k for k in manifest['models']['HRNetV2-W48']]
    down = ['downsample_backbone.' + k for k in manifest['models']['MCIBI.downsample_backbone(720)']]
    assert len(CONFIGS) == 4
    for path in CONFIGS:
        cfg = Config(path)
        ds = os.path.basename(path).split('_')[2]
        classes, lr, wd, iters, mem_lr, mem_loss, total_batch, mcibi_version, stride = RECIPES[ds]
        d, m = cfg.dic, cfg.dic['model']
        assert (m['num_classes'], m['memory_base_lr'], m['use_memory_loss']) == (classes, mem_lr, mem_loss)
        assert m['act'] == 'relu'
        assert d['lr_scheduler']['learning_rate'] == lr and d['optimizer']['weight_decay'] == wd
        assert d['iters'] == iters and d['batch_size'] * 8 == total_batch
        assert d['loss']['coef'] == [1.0, 0.4] + ([1.0] if mem_loss else [])
        assert (m['backbone']['mcibi_version'], m['backbone']['downsample_stride']) == (mcibi_version, stride)
        assert m['backbone']['pretrained'] == lookup_weights('hrnetv2_w48').url and m['aux_channels'] == 0
        with paddle.LazyGuard():
            model = zoo.build_model(without_pretrained(cfg))
        assert isinstance(model.backbone, HRNet) and model.backbone.feat_channels == [720]
        names = backbone + head + (down if stride > 1 else [])
        ours = {sssegmentation_key(k) for k in names} - {None}
        assert ours == set(model.state_dict())


def test_config_forward_backward_with_a_narrow_trunk():
    """The Cityscapes config (mcibi_version, downsample conv, no auxiliary decoder) with HRNetV2-W8."""
    cfg = without_pretrained(Config([p for p in CONFIGS if 'cityscapes' in p][0])).dic
    m = cfg['model']
    m['backbone'].update(width=8, num_blocks=1, num_modules=[1, 1, 1], stage1_blocks=1)
    m.update(num_classes=5, in_channels=120, feats_channels=16, transform_channels=8, out_channels=16)
    paddle.seed(0)
    model = zoo.build_model(Config(cfg))
    model.train()
    outs = model(paddle.randn([2, 3, 64, 64]))
    assert model.output_names == ['stage2', 'stage1'] and [o.shape for o in outs] == [[2, 5, 64, 64]] * 2
    sum(o.mean() for o in outs).backward()
    assert model.backbone.downsample_backbone[0].weight.grad is not None
