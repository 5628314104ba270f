"""RegSeg: official checkpoint import (from the recorded official module tree), the recorded
parity with the official ``model.py``, both configs (build, a few training steps, export and
exported output vs dygraph), the bootstrapped cross-entropy, the reduced RandAugment and
class-uniform sampling.

``tests/manifests/regseg_official.json`` is written by ``tests/manifests/regseg_official.py``
(official RegSeg code + torch, run outside the test suite); no torch is needed here.
"""
import json
import os
import random

import cv2
import numpy as np
import paddle
import pytest

import zoo  # noqa: F401  (registers everything)
from _parity import assert_outputs, float64_model, load_reference_weights, stored, to_tensor
from test_export import assert_parity
from zoo.builder import build_losses, build_model
from zoo.datasets.base import Dataset
from zoo.datasets.class_uniform import ClassUniformDataset
from zoo.datasets.regseg_aug import RegSegRandAugment, auto_contrast, enhance, equalize
from zoo.losses.bootstrapped_ce import BootstrappedCrossEntropyLoss
from zoo.models.convert import convert
from zoo.models.regseg import RegSeg
from zoo.utils.config import Config
from zoo.utils.errors import CheckpointError, ConfigError

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(HERE)
with open(os.path.join(HERE, 'manifests', 'regseg_official.json')) as f:
    MANIFEST = json.load(f)
CONFIGS = {
    'cityscapes': os.path.join(ROOT, 'configs', 'regseg', 'regseg_exp48_cityscapes_768x768_1000e.yml'),
    'camvid': os.path.join(ROOT, 'configs', 'regseg', 'regseg_exp48_camvid_720x960_200e.yml'),
}
VARIANTS = ('exp48_decoder26', 'exp53_decoder29')


def official_state_dict(name, seed=0):
    """A synthetic official checkpoint: every recorded key and shape, random values."""
    rng = np.random.RandomState(seed)
    sd = {}
    for k, shape in MANIFEST['variants'][name]['state_dict']:
        sd[k] = np.array(3000, 'int64') if k.endswith('num_batches_tracked') else rng.randn(*shape).astype('float32')
    return sd


@pytest.mark.parametrize('name', VARIANTS)
def test_official_checkpoint_imports_strictly(name):
    model = RegSeg(19, name)
    sd = official_state_dict(name)
    converted = convert(model, 'regseg', sd)  # raises unless every key/shape matches exactly
    model.set_state_dict(converted)
    own = model.state_dict()
    # values land where the official names say (BN statistics renamed)
    np.testing.assert_array_equal(own['body.stage16.3.conv2.convs.1.weight'].numpy(),
                                  sd['body.stage16.3.conv2.convs.1.weight'])
    np.testing.assert_array_equal(own['decoder.head4.bn._variance'].numpy(), sd['decoder.head4.bn.running_var'])
    np.testing.assert_array_equal(own['body.stage8.0.shortcut.bn._mean'].numpy(),
                                  sd['body.stage8.0.shortcut.bn.running_mean'])
    # a checkpoint of the other variant does not fit
    other = [v for v in VARIANTS if v != name][0]
    with pytest.raises(CheckpointError):
        convert(model, 'regseg', official_state_dict(other))


def test_recorded_parity_with_official_model():
    """The manifest records our logits vs the official model.py on 1x3x1024x2048 (and an odd size)."""
    for name in VARIANTS:
        records = MANIFEST['variants'][name]['parity']
        assert [1, 3, 1024, 2048] in [r['input'] for r in records]
        for r in records:
            # float64 on both sides: the port computes the same function. At odd sizes the decoder's
            # non-integer upsampling ratios differ by float32 rounding (Paddle's bilinear kernel
            # keeps the ratio in float32, ~3e-6 here); at 1024x2048 the ratios are exact.
            exact = r['input'][2] % 16 == 0 and r['input'][3] % 16 == 0
            assert r['max_abs_diff_float64'] < (1e-7 if exact else 2e-5), (name, r)
            # float32: within rounding noise (of the order of torch float32 vs float64 itself)
            assert r['max_abs_diff'] < 10 * max(r['torch_float32_vs_float64'], 1e-5), (name, r)
            assert r['argmax_agreement'] > 0.999, (name, r)  # only near-ties of random logits flip


@pytest.mark.parametrize('name', VARIANTS)
def test_our_model_reproduces_official_stored_outputs(name):
    """Ours, with the official model's seeded weights through the importer, on the stored
    input: the official logits (float64, 1e-9 of their magnitude)."""
    inputs, outputs, meta = stored('regseg_official')
    model = load_reference_weights(float64_model(RegSeg, meta['num_classes'], name), meta, 'regseg', key=name)
    with paddle.no_grad():
        assert_outputs({name: outputs[name]}, {name: model(to_tensor(inputs['image']))[0]})


def test_pretrained_official_file_and_class_change(tmp_path):
    """An official checkpoint (``{'model': state_dict}``) loads as ``pretrained``; with another
    class count the classifier is skipped (CamVid from Cityscapes), anything else must fit."""
    sd = official_state_dict('exp48_decoder26', seed=1)
    path = str(tmp_path / 'official.pdparams')
    paddle.save({'model': sd}, path)
    m = RegSeg(19, pretrained=path)
    np.testing.assert_array_equal(m.decoder.classifier.weight.numpy(), sd['decoder.classifier.weight'])
    m11 = RegSeg(11, pretrained=path)
    assert m11.decoder.classifier.weight.shape == [11, 64, 1, 1]
    np.testing.assert_array_equal(m11.stem.bn._mean.numpy(), sd['stem.bn.running_mean'])
    bad = dict(sd)
    bad.pop('body.stage4.conv1.weight')
    paddle.save({'model': bad}, path)
    with pytest.raises(CheckpointError):
        RegSeg(19, pretrained=path)


def test_unknown_variant_is_a_config_error():
    with pytest.raises(ConfigError, match='exp48_decoder26'):
        RegSeg(19, 'exp99_decoder1')


@pytest.mark.parametrize('name', VARIANTS)
def test_output_contract_odd_sizes(name):
    paddle.seed(0)
    model = RegSeg(5, name)
    x = paddle.randn([1, 3, 45, 71])
    model.train()
    out = model(x)
    assert len(out) == 1 and out[0].shape == [1, 5, 45, 71]
    model.eval()
    with paddle.no_grad():
        out = model(x)
    assert len(out) == 1 and out[0].shape == [1, 5, 45, 71]


def _train_steps(model, loss_fn, steps=3, size=32, num_classes=19):
    """A few SGD steps on one batch with a learnable layout (left half class 1, right half 2)."""
    paddle.seed(0)
    rng = np.random.RandomState(0)
    x = rng.randn(2, 3, size, size).astype('float32')
    x[:, 0, :, :size // 2] += 2.0
    y = np.full((2, size, size), 2, 'int64')
    y[:, :, :size // 2] = 1
    x, y = paddle.to_tensor(x), paddle.to_tensor(y)
    opt = paddle.optimizer.Momentum(0.02, momentum=0.9, parameters=model.parameters())
    model.train()
    losses = []
    for _ in range(steps):
        loss = loss_fn(model(x)[0], y)
        loss.backward()
        opt.step()
        opt.clear_grad()
        losses.append(float(loss))
    return losses


@pytest.mark.parametrize('which,variant', [('cityscapes', 'exp48_decoder26'), ('camvid', 'exp53_decoder29')])
def test_config_trains_exports_and_matches(which, variant, tmp_path):
    """Each config's model builds, trains a few steps (loss falls), exports, and the exported
    program in Paddle Inference (oneDNN) gives the dygraph logits. The CamVid config runs with
    the larger variant so that both configs and both variants go through export (each export
    costs seconds)."""
    from zoo.export import export_model, find_program
    cfg = Config(CONFIGS[which])
    # CamVid's pretrained Cityscapes file is not here; the weights come from model_path
    cfg.dic['model'] = {**{k: v for k, v in cfg.dic['model'].items() if k != 'pretrained'}, 'name': variant}
    paddle.seed(0)
    model = build_model(cfg)
    assert model.name == variant
    n = model.num_classes
    assert n == {'cityscapes': 19, 'camvid': 11}[which]
    loss = build_losses(cfg)['types'][0]
    losses = _train_steps(model, loss, num_classes=n)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    weights = str(tmp_path / 'model.pdparams')
    paddle.save(model.state_dict(), weights)
    out_dir = str(tmp_path / 'export')
    export_model(cfg, out_dir, model_path=weights, output_op='none')
    model.eval()
    x = np.random.RandomState(1).randn(1, 3, 64, 96).astype('float32')
    with paddle.no_grad():
        ref = model(paddle.to_tensor(x))[0].numpy()
    config = paddle.inference.Config(os.path.join(out_dir, find_program(out_dir)),
                                     os.path.join(out_dir, 'model.pdiparams'))
    config.disable_gpu()
    config.enable_mkldnn()
    config.disable_glog_info()
    pred = paddle.inference.create_predictor(config)
    h = pred.get_input_handle(pred.get_input_names()[0])
    h.reshape(list(x.shape))
    h.copy_from_cpu(x)
    pred.run()
    got = pred.get_output_handle(pred.get_output_names()[0]).copy_to_cpu()
    assert got.shape == ref.shape == (1, n, 64, 96)
    # the project's export tolerance (1e-4 of the logit range): three SGD steps at lr 0.02 grow the
    # logits to a few hundred, where elementwise atol/rtol mistook float32 rounding for a mismatch
    assert_parity(ref, got, f'RegSeg {variant} {which}')


def test_recipe_values():
    """The configs as written (exp48, 19 / 11 classes) and the recipe numbers of RegSeg."""
    m = build_model(CONFIGS['cityscapes'])
    assert (m.name, m.num_classes, m.align_corners) == ('exp48_decoder26', 19, False)
    cfg = Config(CONFIGS['cityscapes'])
    d = cfg.dic
    assert (d['batch_size'], d['iters']) == (8, 1000 * (2975 // 8))
    assert d['lr_scheduler']['learning_rate'] == 0.05 and d['lr_scheduler']['warmup_iters'] == 3000
    assert d['lr_scheduler']['warmup_start_lr'] == pytest.approx(0.005)
    assert d['optimizer']['no_weight_decay_norm'] is True
    assert d['train_dataset']['class_uniform_pct'] == 0.5
    camvid = Config(CONFIGS['camvid']).dic
    assert camvid['model']['name'] == 'exp48_decoder26' and camvid['model']['num_classes'] == 11
    assert (camvid['batch_size'], camvid['iters']) == (12, 200 * (468 // 12))
    assert camvid['train_dataset']['mode'] == 'trainval' and camvid['val_dataset']['mode'] == 'test'


# -- bootstrapped cross-entropy ------------------------------------------------------

def _np_ce(logits, label, ignore):
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    lab = np.where(label == ignore, 0, label)
    pix = -np.take_along_axis(logp, lab[:, None], 1)[:, 0]
    return np.where(label == ignore, 0.0, pix).reshape(-1)


@pytest.mark.parametrize('scale', [3.0, 0.05])
def test_bootstrapped_ce_matches_reference_rule(scale):
    """More than K = N*H*W/16 pixels with loss > 0.3: their mean; fewer: the mean of the top K
    (RegSeg's BootstrappedCE), with ignored pixels contributing zero."""
    rng = np.random.RandomState(0)
    logits = (rng.randn(2, 4, 8, 8) * scale).astype('float32')
    label = rng.randint(0, 4, (2, 8, 8)).astype('int64')
    if scale < 1:  # make most pixels easy: a large margin on the true class
        np.put_along_axis(logits, label[:, None], 8.0, axis=1)
    label[0, :2] = 255
    pix = _np_ce(logits.astype('float64'), label, 255)
    k = pix.size // 16
    hard = pix[pix > 0.3]
    expected = hard.mean() if hard.size > k else np.sort(pix)[-k:].mean()
    got = float(BootstrappedCrossEntropyLoss()(paddle.to_tensor(logits), paddle.to_tensor(label)))
    assert got == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert (hard.size > k) == (scale > 1)  # both branches are exercised


# -- RandAugment -----------------------------------------------------------------------

def _photo(h=40, w=56, seed=0):
    rng = np.random.RandomState(seed)
    img = cv2.GaussianBlur(rng.randint(40, 200, (h, w, 3)).astype('uint8'), (5, 5), 0)
    return img


@pytest.mark.parametrize('op', ['auto_contrast', 'equalize', 'color_inc', 'contrast_inc', 'brightness_inc',
                                'sharpness_inc'])
def test_randaugment_ops_match_pil(op):
    Image = pytest.importorskip('PIL.Image')
    from PIL import ImageEnhance, ImageOps
    img = _photo()
    pil = Image.fromarray(img)
    v = 0.18
    ref = {'auto_contrast': lambda: ImageOps.autocontrast(pil),
           'equalize': lambda: ImageOps.equalize(pil),
           'color_inc': lambda: ImageEnhance.Color(pil).enhance(1 + v),
           'contrast_inc': lambda: ImageEnhance.Contrast(pil).enhance(1 + v),
           'brightness_inc': lambda: ImageEnhance.Brightness(pil).enhance(1 + v),
           'sharpness_inc': lambda: ImageEnhance.Sharpness(pil).enhance(1 + v)}[op]()
    ours = {'auto_contrast': lambda: auto_contrast(img), 'equalize': lambda: equalize(img)}.get(
        op, lambda: enhance(img, op, v))()
    diff = np.abs(ours.astype(int) - np.asarray(ref).astype(int))
    assert diff.max() <= 1, (op, diff.max())


def test_randaugment_rotation_moves_label_and_fills_ignore():
    img = _photo(60, 80).astype('float32')
    label = np.zeros((60, 80), 'int64')
    label[20:40, 30:50] = 3
    t = RegSegRandAugment(num_ops=1, magnitude=1.0, ops=['rotate'])
    random.seed(0)
    out = t({'img': img.copy(), 'label': label.copy()})
    assert out['img'].dtype == np.uint8 and out['img'].shape == img.shape
    lab = out['label']
    assert lab[0, 0] == 255 and lab[-1, -1] == 255           # corners rotated in: ignored
    assert set(np.unique(lab)) <= {0, 3, 255}                  # nearest neighbour: no new values
    assert abs(int((lab == 3).sum()) - 400) < 40               # the square keeps its area
    assert not np.array_equal(lab, label)
    # colour ops never touch the label; the same seed gives the same result
    t2 = RegSegRandAugment()
    random.seed(5)
    a = t2({'img': img.copy(), 'label': label.copy()})
    random.seed(5)
    b = t2({'img': img.copy(), 'label': label.copy()})
    np.testing.assert_array_equal(a['img'], b['img'])
    with pytest.raises(ConfigError):
        RegSegRandAugment(ops=['invert'])


# -- class-uniform sampling -------------------------------------------------------------

def _tiny_dataset(root, n=12):
    os.makedirs(root, exist_ok=True)
    lines = []
    for i in range(n):
        img = np.full((16, 16, 3), 100, 'uint8')
        lab = np.zeros((16, 16), 'uint8')
        if i == 7:
            lab[4:8, 4:8] = 2  # class 2 appears in image 7 only
        lab[10:, 10:] = 1
        cv2.imwrite(os.path.join(root, f'{i}.png'), img)
        cv2.imwrite(os.path.join(root, f'{i}_l.png'), lab)
        lines.append(f'{i}.png {i}_l.png')
    with open(os.path.join(root, 'list.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return Dataset(root, transforms=[], num_classes=4, train_path='list.txt', mode='train')


def test_class_uniform_sampling(tmp_path):
    inner = _tiny_dataset(str(tmp_path / 'd'))
    index_file = str(tmp_path / 'index.json')
    ds = ClassUniformDataset(inner, class_uniform_pct=1.0, index_file=index_file)
    assert ds.class_index[2] == [7] and len(ds.class_index[0]) == 12 and ds.class_index[3] == []
    assert ds.classes_present == [0, 1, 2] and ds.num_classes == 4
    picks = [ds.pick(i) for i in range(3000)]
    # class 2 is drawn a third of the time, and it lives only in image 7
    assert 0.3 < picks.count(7) / len(picks) < 0.4
    assert picks == [ds.pick(i) for i in range(3000)]  # deterministic
    img, lab = ds[0]
    assert img.shape == (3, 16, 16) and lab.dtype == np.int64
    for i in range(5):  # each slot holds the picked file (no transforms here: its label as stored)
        np.testing.assert_array_equal(ds[i][1], inner[ds.pick(i)][1])
    # the cached index is reused; pct 0 is the plain dataset order
    assert json.load(open(index_file))['classes']['2'] == [7]
    plain = ClassUniformDataset(inner, class_uniform_pct=0.0, index_file=index_file)
    assert [plain.pick(i) for i in range(24)] == list(range(12)) * 2
    with pytest.raises(ConfigError):
        ClassUniformDataset(inner, class_uniform_pct=1.5)
