"""MCIBI (zoo/models/mcibi.py): module tree vs sssegmentation, the memory read-out and update,
the trainer hook, checkpoints, the memory loss, the eight configs and memory initialisation.

``tests/manifests/mcibi_sssegmentation.json`` is written by
``tests/manifests/mcibi_sssegmentation.py`` (sssegmentation 1.7.0's own MCIBI code, torch).
"""
import copy
import glob
import json
import os

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import zoo
from zoo.engine.trainer import Trainer
from zoo.models.backbones.resnet import ResNet, ResNetV1c
from zoo.models.convert import convert
from zoo.models.mcibi import MCIBI, FeaturesMemory, MCIBIMemoryLoss
from zoo.utils.config import Config
from zoo.utils.errors import CheckpointError, ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def manifest():
    with open(os.path.join(HERE, 'manifests', 'mcibi_sssegmentation.json')) as f:
        return json.load(f)


CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'configs', 'mcibi', 'mcibi_deeplabv3_r*-d8_*.yml')))  # R-50/101 rows


def tiny_mcibi(num_classes=5, **kw):
    """ResNet-18 trunk (stages 64..512) and a narrow head: fast, same code paths."""
    bb = ResNet(depth=18, deep_stem=True, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4))
    opts = dict(in_channels=512, feats_channels=16, transform_channels=8, out_channels=16,
                aspp_dilations=(1, 2), aux_in_channels=256, aux_channels=16)
    opts.update(kw)
    return MCIBI(num_classes=num_classes, backbone=bb, **opts)


def torch_names_to_ours_shapes(names):
    """The reference's state-dict names/shapes as a fake checkpoint (zeros)."""
    return {k: np.zeros(v, 'float32') for k, v in names.items()}


def test_sssegmentation_checkpoint_fills_the_model_exactly():
    """R-101-D8 (the R-50-D8 names are its subset: layer3 has 6 instead of 23 blocks)."""
    facts = manifest()
    names = facts['models']['R-101-D8']
    assert set(facts['models']['R-50-D8']) <= set(names)
    with paddle.LazyGuard():   # names and shapes only
        model = MCIBI(num_classes=facts['num_classes'], backbone=ResNetV1c(
            depth=101, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), contract_dilation=True))
    sd = torch_names_to_ours_shapes(names)
    out = convert(model, 'sssegmentation', sd)   # raises unless every key maps 1:1 with equal shapes
    assert out['memory_module.memory'].shape == (facts['num_classes'], 1, 512)
    assert 'backbone.layer3.22.conv2.weight' in out and 'backbone.stem.1._mean' in out
    # a DataParallel prefix is accepted too; a missing tensor is named
    assert len(convert(model, 'sssegmentation', {'module.' + k: v for k, v in sd.items()})) == len(out)
    sd.pop('decoder_stage2.4.weight')
    with pytest.raises(CheckpointError, match='decoder_stage2.4.weight'):
        convert(model, 'sssegmentation', sd)


def test_convert_weights_cli_from_sssegmentation(tmp_path):
    """``tools/convert_weights.py --from sssegmentation`` on a ``{'model': state_dict}`` file
    with sssegmentation's R-50-D8 names (19 classes = the Cityscapes config)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location('convert_weights', os.path.join(ROOT, 'tools', 'convert_weights.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    names = manifest()['models']['R-50-D8']
    rng = np.random.RandomState(0)
    checked = ('memory_module.memory', 'backbone_net.layer4.2.bn3.running_var', 'decoder_stage1.4.weight')
    src = {k: (rng.randn(*v) if k in checked else np.zeros(v)).astype('float32') for k, v in names.items()}
    src.update({k: np.array(1, 'int64') for k in names if 'num_batches_tracked' in k})
    ckpt = tmp_path / 'mcibi_r50.pdparams'
    paddle.save({'model': {k: paddle.to_tensor(v) for k, v in src.items()}}, str(ckpt))
    out = tmp_path / 'ours.pdparams'
    config = [p for p in CONFIGS if 'r50-d8_cityscapes' in p][0]
    tool.main(['--from', 'sssegmentation', '--config', config, '--input', str(ckpt), '--output', str(out)])
    got = paddle.load(str(out))
    np.testing.assert_array_equal(got['memory_module.memory'].numpy(), src['memory_module.memory'])
    np.testing.assert_array_equal(got['backbone.layer4.2.bn3._variance'].numpy(), src['backbone_net.layer4.2.bn3.running_var'])
    np.testing.assert_array_equal(got['decoder_stage1.4.weight'].numpy(), src['decoder_stage1.4.weight'])


def test_reference_parity_recorded_in_manifest():
    """sssegmentation's MCIBI vs ours from its converted state dict, eval mode, 1x3x512x512,
    random weights and memory: the whole network in float64 agrees within 1e-4 (the mapping and
    the computation are the reference's); in float32 the random 50/101-layer backbone and the
    sharp attention of the random head amplify rounding (docs/weights.md, section MCIBI)."""
    facts = manifest()
    runs = {(r['depth'], r['act']): r for r in facts['parity']}
    assert {(50, 'relu'), (101, 'relu'), (50, 'leakyrelu')} <= set(runs)
    assert runs[(50, 'relu')]['float64_max_abs_diff'] <= 1e-4
    for r in facts['parity']:
        assert r['input'] == [1, 3, 512, 512]
        assert r['max_abs_diff'] <= 0.01 * r['logit_absmax'] and r['argmax_agreement'] > 0.99, r
        if 'head_on_reference_features_max_abs_diff' in r:
            assert r['head_on_reference_features_max_abs_diff'] <= 1e-3 * r['logit_absmax'], r
    assert facts['update_parity']['max_abs_diff'] <= 1e-5


def test_memory_is_a_persistable_buffer_not_a_parameter():
    model = tiny_mcibi()
    assert 'memory_module.memory' in model.state_dict()
    assert all('memory' != n.rsplit('.', 1)[-1] for n, _ in model.named_parameters())
    assert model.memory_module.memory.shape == [5, 1, 16]


def test_memory_read_out_is_the_probability_weighted_memory():
    paddle.seed(0)
    mem = FeaturesMemory(num_classes=3, feats_channels=4, transform_channels=2, out_channels=4,
                         use_context_within_image=False)
    table = np.random.RandomState(0).randn(3, 1, 4).astype('float32')
    mem.memory.set_value(table)
    preds = paddle.randn([2, 3, 2, 5])
    seen = {}
    mem.self_attention.forward = lambda q, k: seen.setdefault('k', k) * 0 + q * 0
    mem.eval()
    mem(paddle.randn([2, 4, 2, 5]), preds)
    p = F.softmax(preds, axis=1).numpy()
    want = np.einsum('bkhw,kc->bchw', p, table[:, 0])
    np.testing.assert_allclose(seen['k'].numpy(), want, atol=1e-6)


def _hand_update(memory, feats, labels, momentum, ignore=255):
    """The paper's update written out per class in numpy (features already at label size)."""
    new = memory.copy()
    f = feats.transpose(0, 2, 3, 1).reshape(-1, feats.shape[1]).astype('float64')
    lab = labels.reshape(-1)
    for c in np.unique(lab):
        if c == ignore:
            continue
        fc = f[lab == c]
        m = memory[c, 0].astype('float64')
        if not m.any():
            new[c, 0] = fc.mean(0)
            continue
        cos = fc @ m / (np.linalg.norm(fc, axis=1) * np.linalg.norm(m))
        w = (1 - cos) / (1 - cos).sum()
        new[c, 0] = (1 - momentum) * m + momentum * (w[:, None] * fc).sum(0)
    return new


def test_one_update_step_matches_a_hand_computation():
    rng = np.random.RandomState(1)
    K, C = 4, 3
    memory = rng.randn(K, 1, C).astype('float32')
    memory[2] = 0                                    # class 2: first time seen -> its mean
    feats = rng.randn(2, C, 3, 4).astype('float32')
    labels = np.array([[[0, 0, 1, 1], [0, 2, 2, 255], [1, 1, 255, 0]],
                       [[2, 0, 0, 0], [1, 255, 1, 1], [0, 2, 0, 0]]], 'int64')  # class 3 absent
    model = tiny_mcibi(num_classes=K, feats_channels=C, out_channels=C, memory_base_momentum=0.9,
                       memory_base_lr=0.01)
    model.memory_module.memory.set_value(memory)
    model._cached_features = paddle.to_tensor(feats)
    lr = 0.005
    model.train_step_hook(labels=paddle.to_tensor(labels), lr=lr, iteration=7)
    momentum = 0.9 / 0.01 * lr                       # base_momentum / base_lr * lr = 0.45
    got = model.memory_module.memory.numpy()
    np.testing.assert_allclose(got, _hand_update(memory, feats, labels, momentum), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[3], memory[3])  # an absent class keeps its entry
    assert model._cached_features is None and model._iteration == 7


def test_update_resizes_features_to_the_labels():
    rng = np.random.RandomState(2)
    mem = FeaturesMemory(num_classes=3, feats_channels=2, transform_channels=2, out_channels=2)
    table = rng.randn(3, 1, 2).astype('float32')
    mem.memory.set_value(table)
    feats = rng.randn(1, 2, 2, 3).astype('float32')
    labels = rng.randint(0, 3, (1, 8, 12))
    mem.update(paddle.to_tensor(feats), paddle.to_tensor(labels), momentum=0.3)
    up = F.interpolate(paddle.to_tensor(feats), size=[8, 12], mode='bilinear', align_corners=False).numpy()
    np.testing.assert_allclose(mem.memory.numpy(), _hand_update(table, up, labels, 0.3), rtol=1e-5, atol=1e-6)


def test_training_outputs_order_and_memory_loss_gate():
    paddle.seed(0)
    model = tiny_mcibi(use_memory_loss=True, memory_loss_start_iter=1)
    x = paddle.randn([2, 3, 32, 32])
    model.train()
    outs = model(x)
    assert [list(o.shape) for o in outs[:3]] == [[2, 5, 32, 32]] * 3
    assert outs[3].shape[0] == 0 and float(MCIBIMemoryLoss()(outs[3])) == 0.0   # iteration 1: not yet
    model.memory_module.memory.set_value(np.random.RandomState(0).randn(5, 1, 16).astype('float32'))
    model.train_step_hook(labels=paddle.zeros([2, 32, 32], 'int64'), lr=0.01, iteration=1)
    outs = model(x)
    assert list(outs[3].shape) == [5, 5, 1, 1]
    want = F.cross_entropy(outs[3].reshape([5, 5]), paddle.arange(5).reshape([5, 1]))
    np.testing.assert_allclose(float(MCIBIMemoryLoss()(outs[3])), float(want), rtol=1e-6)
    model.eval()
    outs = model(x)
    assert len(outs) == 1 and list(outs[0].shape) == [2, 5, 32, 32]


def test_option_errors_name_the_key():
    bb = ResNet(depth=18, deep_stem=True)
    with pytest.raises(ConfigError, match='model.in_channels'):
        MCIBI(num_classes=3, backbone=bb, in_channels=2048)
    with pytest.raises(ConfigError, match='model.update_strategy'):
        MCIBI(num_classes=3, backbone=bb, in_channels=512, aux_in_channels=256, update_strategy='ema')


def _demo_config(path, demo_root, iters=2, shallow=True):
    """The config on the demo data (8 classes, 32x32 crops, 2 steps); ``shallow`` swaps the
    ResNet-50/101 trunk for a ResNet-18 one (same head, losses, optimizer and memory update) to
    keep the eight runs cheap."""
    cfg = Config(path).dic
    ds = {'type': 'DemoShapes', 'dataset_root': demo_root,
          'transforms': [{'type': 'RandomCrop', 'crop_size': [32, 32]}, {'type': 'Normalize'}]}
    cfg['train_dataset'] = {**ds, 'mode': 'train'}
    cfg['val_dataset'] = {**ds, 'mode': 'val', 'transforms': [{'type': 'Normalize'}]}
    cfg.update(iters=iters, batch_size=2, train={'log_iters': 1, 'save_interval': iters})
    m = cfg['model']
    m['num_classes'] = 8
    m['backbone']['pretrained'] = None
    if shallow:
        m['backbone'].update(type='ResNet', depth=18, deep_stem=True)
        m['backbone'].pop('contract_dilation')
        m.update(in_channels=512, aux_in_channels=256, feats_channels=64, transform_channels=32, out_channels=64,
                 aux_channels=64)
    if m.get('use_memory_loss'):
        m['memory_loss_start_iter'] = 1
    return cfg


def _train_and_check(cfg, tmp_path):
    trainer = Trainer(Config(cfg), save_dir=str(tmp_path))
    trainer.train()
    memory = trainer.model.memory_module.memory.numpy()
    assert np.isfinite(memory).all()
    seen = np.abs(memory).sum((1, 2)) > 0
    assert 2 <= seen.sum() <= 8          # the classes present in the two batches were written
    saved = paddle.load(str(tmp_path / 'iter_2' / 'model.pdparams'))
    np.testing.assert_array_equal(saved['memory_module.memory'].numpy(), memory)
    return trainer, saved


@pytest.mark.parametrize('path', CONFIGS, ids=os.path.basename)
def test_config_trains_and_checkpoints_the_memory(path, demo_root, tmp_path):
    cfg = _demo_config(path, demo_root)
    trainer, saved = _train_and_check(cfg, tmp_path)
    # the checkpoint restores the memory with the weights
    fresh = zoo.build_model(Config(cfg))
    fresh.set_state_dict(saved)
    np.testing.assert_array_equal(fresh.memory_module.memory.numpy(), trainer.model.memory_module.memory.numpy())


def test_full_size_r50_config_trains(demo_root, tmp_path):
    """The ADE20K R-50-D8 config as written (memory loss on from step 2), on demo crops."""
    path = [p for p in CONFIGS if 'r50-d8_ade20k' in p][0]
    trainer, _ = _train_and_check(_demo_config(path, demo_root, shallow=False), tmp_path)
    assert trainer.model.output_names == ['stage2', 'stage1', 'aux', 'memory']


def test_config_recipes():
    facts = {
        'cocostuff10k': (182, 0.001, 1.0e-4, 61820, 9.0e-4, False, 'relu'),
        'ade20k': (150, 0.01, 5.0e-4, 164190, 0.01, True, 'relu'),
        'cityscapes': (19, 0.01, 5.0e-4, 95480, 9.0e-3, False, 'relu'),
        'lip': (20, 0.01, 5.0e-4, 142800, 0.01, False, 'leakyrelu:0.01'),
    }
    assert len(CONFIGS) == 8
    for path in CONFIGS:
        cfg = Config(path)
        ds = os.path.basename(path).split('_')[3]
        classes, lr, wd, iters, mom_lr, mem_loss, act = facts[ds]
        m = cfg.dic['model']
        assert (m['num_classes'], m['memory_base_lr'], m['use_memory_loss'], m['act']) == (classes, mom_lr, mem_loss, act)
        assert cfg.dic['lr_scheduler']['learning_rate'] == lr and cfg.dic['optimizer']['weight_decay'] == wd
        assert cfg.dic['iters'] == iters
        assert cfg.dic['loss']['coef'][:3] == [1.0, 0.4, 0.4]
        assert m['backbone']['depth'] == (101 if 'r101' in path else 50)
        if ds == 'cityscapes':
            tc = cfg.dic['test_config']
            assert tc['is_slide'] and tc['crop_size'] == [1024, 512] and tc['stride'] == [341, 341]
            assert tc['scales'] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75] and tc['flip_horizontal']
            assert cfg.dic['train_dataset']['mode'] == 'trainval'


def test_init_memory_from_a_trained_model(demo_root, tmp_path):
    from zoo.datasets.demo import DemoShapes
    from zoo.models.mcibi_memory_init import init_memory
    paddle.seed(0)
    model = tiny_mcibi(num_classes=8)
    ds = DemoShapes(demo_root, transforms=[{'type': 'Normalize'}], mode='train')
    memory = init_memory(model, ds, num_feats_per_cls=1, max_images=2)
    assert memory.shape == (8, 1, 16) and np.isfinite(memory).all()
    present = np.unique(np.concatenate([np.unique(ds[i][1]) for i in range(2)]))
    present = present[present < 8]
    assert (np.abs(memory[present]).sum(-1) > 0).all()
    out = tmp_path / 'memory.npy'
    np.save(out, memory)
    loaded = tiny_mcibi(num_classes=8, memory_init=str(out))
    np.testing.assert_array_equal(loaded.memory_module.memory.numpy(), memory.astype('float32'))
    np.save(tmp_path / 'bad.npy', memory[:3])
    with pytest.raises(CheckpointError, match='memory_init'):
        tiny_mcibi(num_classes=8, memory_init=str(tmp_path / 'bad.npy'))
