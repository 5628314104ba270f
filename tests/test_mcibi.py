"""MCIBI (zoo/models/mcibi.py): module tree vs sssegmentation, the memory read-out and update,
the trainer hook, checkpoints, the memory loss, the eight configs and memory initialisation.

``tests/manifests/mcibi_sssegmentation.json`` is written by
``tests/manifests/mcibi_sssegmentation.py`` (sssegmentation 1.7.0's own MCIBI code, torch).
"""
import glob
import json
import os

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import zoo
from _parity import assert_outputs, float64_model, load_reference_weights, reference_weights, stored, to_tensor
from zoo.engine.trainer import Trainer
from zoo.models.backbones.resnet import ResNet, ResNetV1c
from zoo.models.convert import convert
from zoo.losses.mcibi_memory_loss import MCIBIMemoryLoss
from zoo.models.backbones.vit import VisionTransformer
from zoo.models.layers import input_hw, resize
from zoo.models.mcibi import MCIBI
from zoo.models.mcibi_memory import FeaturesMemory
from zoo.utils.config import Config
from zoo.utils.errors import CheckpointError, ConfigError

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def manifest():
    with open(os.path.join(HERE, 'manifests', 'mcibi_sssegmentation.json')) as f:
        return json.load(f)


CONFIGS = sorted(p for p in glob.glob(os.path.join(ROOT, 'configs', 'mcibi', 'mcibi_r*-d8_*.yml'))
                 if '_custom_' not in p)  # the R-50/101 rows of sssegmentation


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


def test_our_model_reproduces_sssegmentation_stored_outputs():
    """Ours (R-50-D8, with ReLU and with LIP's LeakyReLU), with sssegmentation's seeded weights
    and memory through the importer, on the stored inputs: its stage-1 and stage-2 logits in
    float64, to 1e-9 of their magnitude with ReLU and 1e-8 with LeakyReLU: Paddle keeps the slope
    in float32 (0.01 -> 0.0099999998, 2e-8 relative on the negative side; measured 7e-10 here)."""
    inputs, outputs, meta = stored('mcibi_sssegmentation')
    backbone = {'depth': 50, 'strides': (1, 2, 1, 1), 'dilations': (1, 1, 2, 4), 'contract_dilation': True}
    sd = reference_weights(meta, 'relu')   # both variants have the same tensors: generated once
    assert meta['weights']['leakyrelu']['fingerprint'] == meta['weights']['relu']['fingerprint']
    for act in ('relu', 'leakyrelu'):
        model = float64_model(lambda: MCIBI(num_classes=meta['num_classes'], backbone=ResNetV1c(**backbone),
                                            act='relu' if act == 'relu' else 'leakyrelu:0.01'))
        model = load_reference_weights(model, meta, 'sssegmentation', key=act, state_dict=sd)
        x = to_tensor(inputs[act])
        with paddle.no_grad():
            stage2, stage1 = model.decode(model.extract_feat(x))
            ours = {f'{act}/stage2': resize(stage2, input_hw(x)), f'{act}/stage1': resize(stage1, input_hw(x))}
            assert_outputs({k: v for k, v in outputs.items() if k.startswith(act + '/')}, ours,
                           tolerance=1e-9 if act == 'relu' else 1e-8)
            np.testing.assert_array_equal(model(x)[0].numpy(), ours[f'{act}/stage2'].numpy())


def test_memory_update_reproduces_sssegmentation_stored_update():
    """One memory update (cosine-weighted, lr-scaled momentum, a class seen for the first time,
    ignored pixels) from the stored features and labels: sssegmentation's new memory. Our update
    runs in float32 (the memory is a float32 buffer): 1e-6 of the memory's magnitude."""
    from seeded import seeded_array
    inputs, outputs, meta = stored('mcibi_sssegmentation')
    u = meta['update']
    memory = seeded_array('update/memory', (u['classes'], 1, u['channels']))
    memory[u['first_seen']] = 0
    labels = np.random.RandomState(5).randint(0, u['classes'], u['labels'])   # as the reference script
    labels[0, :4] = 255                                                      # its -100
    mem = FeaturesMemory(u['classes'], u['channels'], 8, u['channels'])
    mem.memory.set_value(memory.astype('float32'))
    mem.update(paddle.to_tensor(inputs['update/features'].astype('float32')), paddle.to_tensor(labels),
               u['base_momentum'] / u['base_lr'] * u['lr'], 255)
    assert_outputs({'update/memory': outputs['update/memory']}, {'update/memory': mem.memory}, tolerance=1e-6)


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
        ds = os.path.basename(path).split('_')[2]
        classes, lr, wd, iters, mom_lr, mem_loss, act = facts[ds]
        m = cfg.dic['model']
        assert (m['num_classes'], m['memory_base_lr'], m['use_memory_loss'], m['act']) == (classes, mom_lr, mem_loss, act)
        assert cfg.dic['lr_scheduler']['learning_rate'] == lr and cfg.dic['optimizer']['weight_decay'] == wd
        assert cfg.dic['iters'] == iters
        assert cfg.dic['loss']['coef'][:3] == [1.0, 0.4, 0.4]
        assert m['backbone']['depth'] == (101 if 'r101' in path else 50)
        if ds == 'cityscapes':
            tc = cfg.dic['test_config']
            assert tc['is_slide'] and tc['crop_size'] == [512, 1024] and tc['stride'] == [341, 341]  # [w, h]
            assert tc['window_softmax'] is True
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


# -- ViT-L rows: three auxiliary decoders (2 convs, x4 upsampling) on layers 9 / 14 / 19 ------

VIT_CONFIGS = sorted(glob.glob(os.path.join(ROOT, 'configs', 'mcibi', 'mcibi_vit-large_*.yml')))


def vit_manifest():
    with open(os.path.join(HERE, 'manifests', 'mcibi_vit_sssegmentation.json')) as f:
        return json.load(f)


def tiny_vit_mcibi(num_classes=5, **kw):
    """A narrow ViT (4 layers of width 32, every layer an output, per-output LayerNorms) with
    the ViT-L head layout: three 2-conv x4-upsampling auxiliary decoders."""
    from zoo.models.backbones.vit import VisionTransformer
    bb = VisionTransformer(img_size=(64, 64), embed_dims=32, num_layers=4, num_heads=4, out_indices=(0, 1, 2, 3),
                           out_norm=True)
    opts = dict(in_channels=32, feats_channels=16, transform_channels=8, out_channels=16, aspp_dilations=(1, 6),
                aux_in_channels=[32, 32, 32], aux_channels=16, aux_num_convs=2, aux_upsample=4)
    opts.update(kw)
    return MCIBI(num_classes=num_classes, backbone=bb, **opts)


def test_three_aux_decoders_outputs_names_and_gradients():
    paddle.seed(0)
    model = tiny_vit_mcibi(use_memory_loss=True)
    assert model.output_names == ['stage2', 'stage1', 'aux1', 'aux2', 'aux3', 'memory']
    # sssegmentation's DefaultAuxiliaryDecoder(num_convs=2, upsample x4): conv, BN, act, up, conv,
    # BN, act, up, dropout, classifier -> indices 0..9, parameters at 0, 1, 4, 5, 9
    for dec in model.auxiliary_decoder:
        kinds = [type(m).__name__ for m in dec]
        assert kinds == ['Conv2D', 'BatchNorm2D', 'ReLU', 'Upsample'] * 2 + ['Dropout2D', 'Conv2D'], kinds
    aux = sorted({k.rsplit('.', 1)[0] for k in model.state_dict() if k.startswith('auxiliary_decoder.')})
    assert aux == [f'auxiliary_decoder.{i}.{j}' for i in range(3) for j in (0, 1, 4, 5, 9)]
    model.train()
    x = paddle.randn([2, 3, 32, 48])           # 2x3 tokens; aux: 8x12 after the first conv, 32x48 after the second
    seen = []
    hooks = [dec[8].register_forward_pre_hook(lambda layer, inp: seen.append(inp[0].shape))
             for dec in model.auxiliary_decoder]
    outs = model(x)
    for h in hooks:
        h.remove()
    assert seen == [[2, 16, 32, 48]] * 3
    assert [list(o.shape) for o in outs[:5]] == [[2, 5, 32, 48]] * 5 and list(outs[5].shape) == [5, 5, 1, 1]
    sum(o.mean() for o in outs[2:5]).backward()
    for i in range(3):   # each aux decoder trains its own layer's norm and everything below it
        assert model.auxiliary_decoder[i][0].weight.grad is not None
        assert model.backbone.norm_layers[i].weight.grad is not None
    assert model.backbone.norm_layers[3].weight.grad is None
    model.eval()
    assert len(model(x)) == 1


def test_single_aux_decoder_keeps_its_names():
    """The ResNet / S-101 configs (one 1-conv decoder on stage 3): ``auxiliary_decoder.<j>``, and a
    one-entry list is the same decoder (as sssegmentation unwraps a one-entry ``auxiliary``)."""
    names = {k for k in tiny_mcibi().state_dict() if k.startswith('auxiliary_decoder.')}
    assert {k.rsplit('.', 1)[0] for k in names} == {'auxiliary_decoder.0', 'auxiliary_decoder.1',
                                                    'auxiliary_decoder.4'}
    one = tiny_mcibi(aux_in_channels=[256])
    assert {k for k in one.state_dict() if k.startswith('auxiliary_decoder.')} == names
    assert one.output_names == ['stage2', 'stage1', 'aux']
    assert 'auxiliary_decoder.0.weight' in manifest()['models']['R-50-D8']


def test_aux_option_errors_name_the_key():
    with pytest.raises(ConfigError, match='model.aux_in_channels'):
        tiny_vit_mcibi(aux_in_channels=[32, 32, 32, 32])     # only 3 features before the last
    with pytest.raises(ConfigError, match='model.aux_in_channels'):
        tiny_vit_mcibi(aux_in_channels=[32, 64])
    with pytest.raises(ConfigError, match='model.aux_in_channels'):
        tiny_vit_mcibi(aux_in_channels=[])
    with pytest.raises(ConfigError, match='model.aux_upsample'):
        tiny_vit_mcibi(aux_upsample='x4')
    with pytest.raises(ConfigError, match='model.aux_num_convs'):
        tiny_vit_mcibi(aux_num_convs=-1)


def _to_sssegmentation(sd):
    """Our state dict in sssegmentation's names and layouts (the inverse of the importer)."""
    from zoo.models.backbones.vit import is_linear_weight
    out = {}
    for k, v in sd.items():
        v = v.numpy()
        if k.startswith('backbone.norm_layers.'):
            k = k[len('backbone.'):]
        elif k.startswith('backbone.'):
            if is_linear_weight(k):
                v = v.T.copy()
            k = 'backbone_net.' + k[len('backbone.'):]
        k = k.replace('._mean', '.running_mean').replace('._variance', '.running_var')
        out[k] = v
        if k.endswith('.running_var'):
            out[k[:-len('running_var')] + 'num_batches_tracked'] = np.array(3, 'int64')
    return out


def test_import_of_a_vit_checkpoint_reproduces_the_model():
    paddle.seed(1)
    src = tiny_vit_mcibi()
    src.memory_module.memory.set_value(np.random.RandomState(0).randn(5, 1, 16).astype('float32'))
    src.eval()
    dst = tiny_vit_mcibi()
    dst.set_state_dict(convert(dst, 'sssegmentation', _to_sssegmentation(src.state_dict())))
    dst.eval()
    x = paddle.randn([1, 3, 48, 64])
    np.testing.assert_allclose(dst(x)[0].numpy(), src(x)[0].numpy(), atol=1e-6)


def _lazy(path):
    cfg = Config(path).dic
    cfg['model']['backbone']['pretrained'] = None
    with paddle.LazyGuard():   # names and shapes only: ~350M parameters are never initialised
        return zoo.build_model(Config(cfg))


@pytest.fixture(scope='module')
def vit_large_models():
    return {os.path.basename(p).split('_')[2]: _lazy(p) for p in VIT_CONFIGS}


def _reference_shapes_in_our_names(names):
    from zoo.models.backbones.vit import is_linear_weight
    from zoo.models.mcibi import sssegmentation_key
    out = {}
    for k, shape in names.items():
        new = sssegmentation_key(k)
        if new is None:
            continue
        assert new not in out, new
        out[new] = shape[::-1] if new.startswith('backbone.') and is_linear_weight(new) else shape
    return out


def test_sssegmentation_vit_large_checkpoint_fills_the_models(vit_large_models):
    """Every tensor of sssegmentation's ViT-L MCIBI (manifest) lands on one of ours with its shape
    (linear weights transposed), and every one of ours is filled: the ADE20K config as recorded,
    COCO-Stuff-10k with 182 instead of 150 classes in the memory and the classifiers."""
    facts = vit_manifest()
    names = facts['names']
    assert facts['num_classes'] == 150 and 'norm_layers.3.weight' in names
    assert {k.rsplit('.', 1)[0] for k in names if k.startswith('auxiliary_decoder.') and 'running' not in k} == \
        {f'auxiliary_decoder.{i}.{j}' for i in range(3) for j in (0, 1, 4, 5, 9)}
    mapped = _reference_shapes_in_our_names(names)
    for ds, classes in (('ade20k', 150), ('cocostuff10k', 182)):
        ours = {k: list(v.shape) for k, v in vit_large_models[ds].state_dict().items()}
        want = {k: ([classes] + s[1:] if s and s[0] == 150 else s) for k, s in mapped.items()}
        assert sorted(set(ours) ^ set(want)) == []
        assert {k: s for k, s in ours.items() if want[k] != s} == {}
    assert mapped['backbone.layers.23.attn.attn.in_proj_weight'] == [1024, 3072]
    assert mapped['backbone.norm_layers.0.weight'] == [1024]


def test_vit_large_configs_recipes(vit_large_models):
    from zoo.builder import build_losses
    from zoo.optim.optimizers import param_groups
    facts = {'ade20k': (150, 0.01, 1.0e-4, 164190, 0.01, True, [1, 6, 12, 18]),
             'cocostuff10k': (182, 0.001, 1.0e-5, 61820, 9.0e-4, False, [1, 12, 24, 36])}
    assert sorted(vit_large_models) == sorted(facts)
    for path in VIT_CONFIGS:
        cfg = Config(path)
        ds = os.path.basename(path).split('_')[2]
        classes, lr, end_lr, iters, mom_lr, mem_loss, dilations = facts[ds]
        model = vit_large_models[ds]
        m = cfg.dic['model']
        assert (m['num_classes'], m['memory_base_lr'], m['use_memory_loss'], m['aspp_dilations']) == \
            (classes, mom_lr, mem_loss, dilations)
        assert m['backbone']['pretrained'].endswith('jx_vit_large_p16_384-b3be5167.pth')
        assert (cfg.dic['lr_scheduler']['learning_rate'], cfg.dic['lr_scheduler']['end_lr'], cfg.dic['iters']) == \
            (lr, end_lr, iters)
        assert cfg.dic['optimizer']['weight_decay'] == 0.0 and cfg.dic['optimizer']['backbone_lr_mult'] == 0.1
        tc = cfg.dic['test_config']
        assert tc['is_slide'] and tc['crop_size'] == [512, 512] and tc['stride'] == [341, 341]
        assert tc['window_softmax'] is True
        losses = build_losses(cfg)
        assert len(losses['types']) == len(model.output_names) == (6 if mem_loss else 5)
        assert losses['coef'] == [1.0, 0.4, 0.4, 0.4, 0.4] + ([1.0] if mem_loss else [])
        assert model.output_names[2:5] == ['aux1', 'aux2', 'aux3'] and len(model.auxiliary_decoder) == 3
        # the reference's params_rules: backbone_net x0.1; the head's LayerNorms (outside it there) x1
        mult = {n: lr_mult for n, _, lr_mult, _ in param_groups(model, cfg.dic['optimizer'])}
        assert mult['backbone.layers.0.attn.attn.in_proj_weight'] == pytest.approx(0.1)
        assert mult['backbone.norm_layers.2.weight'] == pytest.approx(1.0)
        assert mult['auxiliary_decoder.2.9.weight'] == 1.0 and mult['decoder_stage2.4.weight'] == 1.0


@pytest.mark.parametrize('path', VIT_CONFIGS, ids=os.path.basename)
def test_vit_config_trains_narrow(path, demo_root, tmp_path):
    """The config's head, losses (5 or 6 outputs), optimizer and memory update for 2 steps on
    demo crops, with the ViT narrowed (4 layers of width 32; same out_indices positions)."""
    cfg = _demo_config(path, demo_root, shallow=False)
    cfg['model']['backbone'].update(img_size=[32, 32], embed_dims=32, num_layers=4, num_heads=4,
                                    out_indices=[0, 1, 2, 3])
    cfg['model'].update(in_channels=32, aux_in_channels=[32, 32, 32], feats_channels=32, transform_channels=16,
                        out_channels=32, aux_channels=16)
    trainer, _ = _train_and_check(cfg, tmp_path)
    assert len(trainer.model.output_names) == len(cfg['loss']['coef'])


def test_vit_reference_parity_recorded_in_manifest():
    """tests/manifests/mcibi_vit_parity.py: sssegmentation's ViT-L MCIBI (ADE20K config) vs ours from its
    converted state dict, eval mode, 1x3x512x512, random weights and memory (docs/weights.md)."""
    p = vit_manifest()['parity']
    assert p['input'] == [1, 3, 512, 512] and p['tensors'] > 300
    assert p['max_abs_diff'] <= 0.01 * p['logit_absmax'] and p['argmax_agreement'] > 0.99, p
    assert max(p['backbone_normed_features_max_abs_diff']) <= 1e-3
    assert p['aux_outputs'] == [[1, 150, 512, 512]] * 3      # 32x32 tokens, x4 after each of the 2 convs
    assert max(p['aux_on_reference_features_max_abs_diff']) <= 1e-3 * max(p['aux_absmax'])
    if 'float64_max_abs_diff' in p:
        assert p['float64_max_abs_diff'] <= 1e-4


def test_vit_model_reproduces_sssegmentation_stored_outputs():
    """The ViT-L ADE20K model narrowed (ViT width 64, 6 layers; head 32 wide; the config's
    structure: LayerNorms per output, ASPP 1/6/12/18, three two-conv auxiliary decoders with x4
    upsampling), with sssegmentation's seeded weights and memory through the importer, on the
    stored input: its stage-2 / stage-1 logits and the auxiliary decoders' outputs, in float64
    to 1e-8 (Paddle keeps LayerNorm epsilons in float32, see tests/test_vit.py)."""
    inputs, outputs, meta = stored('mcibi_vit_sssegmentation')
    n = meta['narrow']

    def build():
        bb = VisionTransformer(img_size=n['img_size'], embed_dims=n['embed_dims'], num_layers=n['num_layers'],
                               num_heads=n['num_heads'], out_indices=n['out_indices'], out_norm=True)
        return MCIBI(num_classes=meta['num_classes'], backbone=bb, in_channels=n['embed_dims'],
                     feats_channels=n['feats_channels'], transform_channels=n['transform_channels'],
                     out_channels=n['out_channels'], aspp_dilations=(1, 6, 12, 18),
                     aux_in_channels=[n['embed_dims']] * 3, aux_channels=n['aux_channels'], aux_num_convs=2,
                     aux_upsample=4, use_memory_loss=True)

    model = load_reference_weights(float64_model(build), meta, 'sssegmentation')
    x = to_tensor(inputs['image'])
    with paddle.no_grad():
        feats = model.extract_feat(x)
        stage2, stage1 = model.decode(feats)
        ours = {'stage2': resize(stage2, input_hw(x)), 'stage1': resize(stage1, input_hw(x))}
        ours.update({f'aux{i + 1}': head(feats) for i, head in enumerate(model.auxiliary_heads())})
        assert_outputs(outputs, ours, tolerance=1e-8)


def test_memory_update_keeps_the_buffer_dtype_under_amp_o2():
    """``paddle.amp.decorate(level='O2')`` casts the memory buffer to fp16/bf16; the update computes
    in float32 and writes back in the buffer's dtype (set_value refuses another dtype)."""
    from zoo.models.mcibi_memory import FeaturesMemory
    m = FeaturesMemory(3, 8, 8, 8)
    m._buffers['memory'] = m.memory.astype('float16')
    paddle.seed(0)
    m.update(paddle.randn([1, 8, 4, 4]), paddle.randint(0, 3, [1, 8, 8]), momentum=0.1)
    assert m.memory.dtype == paddle.float16
    assert np.abs(m.memory.astype('float32').numpy()).sum() > 0  # filled by the first update
