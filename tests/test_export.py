"""tools/export.py / zoo.export: static-graph export + deploy.yaml, and parity with dygraph.

Parity (the exported program through Paddle Inference with oneDNN and through ONNX Runtime
vs the dygraph model): max |diff| <= 1e-4 of the logit range and equal argmax wherever
dygraph's top-2 margin is larger than that tolerance (a tie can go either way under float
reordering), at batch 1 and 2 and at sizes not divisible by 32.

Costs (2 cores): the tiny-model tests here take seconds. Every config in configs/ is trained
for one step, exported and compared (and the lightest config of each model type also through
ONNX Runtime) by ``tests/test_every_config.py``, which uses the helpers of this file.
"""
import copy
import glob
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest
import yaml

import zoo
from zoo.export import (adaptive_avg_pool2d_by_matmul, check_input_shape,
                        deploy_transforms, export_model,
                        without_pretrained)
from zoo.benchmark import calibrate_bn, scale_classifier  # noqa: F401  (test_every_config imports them from here)
from zoo.engine.visual import generate_palette
from zoo.utils.config import Config
from zoo.utils.errors import CheckpointError, ConfigError
from zoo.utils.registry import MODELS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'deploy', 'python'))
import infer  # noqa: E402  (deploy/python/infer.py)

HAS_ONNX = importlib.util.find_spec('paddle2onnx') is not None and importlib.util.find_spec('onnxruntime') is not None


@MODELS.register()
class ExportTestNet(nn.Layer):
    """Tiny model whose forward depends on the input size (pyramid pooling, resize to input)."""

    def __init__(self, num_classes=4, align_corners=False, pretrained=None):
        super().__init__()
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.stem = nn.Sequential(nn.Conv2D(3, 8, 3, stride=2, padding=1), nn.BatchNorm2D(8), nn.ReLU())
        self.pools = nn.LayerList([nn.AdaptiveAvgPool2D(s) for s in (1, 3)])
        self.cls = nn.Conv2D(8 * 3, num_classes, 1)
        self.aux = nn.Conv2D(8, num_classes, 1)

    def forward(self, x):
        f = self.stem(x)
        size = paddle.shape(f)[2:]
        feats = [f] + [F.interpolate(p(f), size, mode='bilinear', align_corners=self.align_corners)
                       for p in self.pools]
        out = F.interpolate(self.cls(paddle.concat(feats, 1)), paddle.shape(x)[2:], mode='bilinear',
                            align_corners=self.align_corners)
        if self.training:
            return [out, F.interpolate(self.aux(f), paddle.shape(x)[2:], mode='bilinear')]
        return [out]


def tiny_config(**model):
    return {
        'model': {'type': 'ExportTestNet', 'num_classes': 4, **model},
        'val_dataset': {'type': 'Dataset', 'dataset_root': '.', 'num_classes': 4,
                        'transforms': [{'type': 'Resize', 'target_size': [96, 64], 'keep_ratio': True},
                                       {'type': 'Normalize', 'mean': [123.675, 116.28, 103.53],
                                        'std': [58.395, 57.12, 57.375]}]},
    }


def config_num_classes(cfg):
    from zoo.builder import dataset_num_classes
    return cfg.get('model.num_classes') or dataset_num_classes(cfg)


def assert_parity(ref, out, what, f32_error=0.0):
    """The exported logits vs dygraph's: max |diff| <= 1e-4 of the logit range, or, where
    dygraph's own float32 result is further than that from exact (float64) arithmetic
    (``f32_error``, measured by the caller), <= four times that error (two independent float32
    errors; measured ratios up to 2.6): random weights in ResNeSt-101 amplify float32 rounding
    to 2-4e-4 of the logit range, so no two float32 implementations (oneDNN vs
    Paddle's kernels, BN folded or not) can agree closer. Argmax equal wherever the top-2 margin
    is larger than twice the tolerance. Each comparison is appended to the JSON lines file
    ``$ZOO_PARITY_LOG`` if set. Returns the max |diff|."""
    ref, out = np.asarray(ref, np.float64), np.asarray(out, np.float64)
    assert out.shape == ref.shape, f'{what}: shape {out.shape} vs dygraph {ref.shape}'
    assert np.isfinite(ref).all(), f'{what}: dygraph logits not finite'
    span = max(float(ref.max() - ref.min()), 1e-6)
    tol = max(1e-4 * span, 4 * f32_error)
    diff = float(np.abs(out - ref).max())
    if os.environ.get('ZOO_PARITY_LOG'):
        with open(os.environ['ZOO_PARITY_LOG'], 'a') as f:
            f.write(json.dumps({'what': what, 'diff_rel': diff / span, 'f32_error_rel': f32_error / span}) + '\n')
    assert diff <= tol, (f'{what}: max abs diff {diff:.3g} > {tol:.3g} (1e-4 of the logit range {span:.3g}, or '
                         f'4x dygraph\'s float32 error {f32_error:.3g})')
    top2 = np.sort(ref, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > 2 * tol
    same = out.argmax(1) == ref.argmax(1)
    assert same[decided].all(), f'{what}: argmax differs at {(~same & decided).sum()} decided pixels'
    return diff


def export_and_compare(cfg_or_dict, tmp_path, shapes, with_onnx=True, seed=0):
    """Build (BN-calibrated random weights), save weights, export, compare every backend."""
    cfg = cfg_or_dict if isinstance(cfg_or_dict, Config) else Config(cfg_or_dict)
    cfg = without_pretrained(cfg)
    paddle.seed(seed)
    model = calibrate_bn(zoo.build_model(cfg), num_classes=config_num_classes(cfg))
    weights = str(tmp_path / 'model.pdparams')
    paddle.save(model.state_dict(), weights)
    out_dir = tmp_path / 'export'
    fmt = 'onnx' if with_onnx else 'paddle'
    export_model(cfg, str(out_dir), model_path=weights, output_op='none', fmt=fmt)
    dcfg = infer.DeployConfig(str(out_dir / 'deploy.yaml'))
    backends = [infer.Predictor(dcfg, backend='paddle', enable_mkldnn=True, cpu_threads=2)]
    if with_onnx:
        backends.append(infer.Predictor(dcfg, backend='onnxruntime', cpu_threads=2))
    diffs = {}
    rng = np.random.RandomState(seed)
    for shape in shapes:
        x = rng.uniform(-2, 2, shape).astype('float32')
        with paddle.no_grad():
            ref = model(paddle.to_tensor(x))[0].numpy()
        for p in backends:
            diffs[(p.backend, tuple(shape))] = assert_parity(ref, p.run(x), f'{cfg.path} {p.backend} {shape}')
    return diffs


# -- the export itself ----------------------------------------------------------------

def test_export_writes_program_params_and_deploy_yaml(tmp_path):
    deploy = export_model(Config(tiny_config()), str(tmp_path / 'out'))
    files = set(os.listdir(tmp_path / 'out'))
    assert {'model.json', 'model.pdiparams', 'deploy.yaml'} <= files  # Paddle 3 / PIR
    with open(tmp_path / 'out' / 'deploy.yaml') as f:
        d = yaml.safe_load(f)['Deploy']
    assert d == deploy
    # the model has adaptive pooling: a second program with it written portably runs in bf16
    assert d['bf16_model'] == 'model_bf16.json' and d['bf16_params'] == 'model.pdiparams'
    assert set(d['sha256']) == {'model.json', 'model.pdiparams', 'model_bf16.json'}
    assert d['model'] == 'model.json' and d['params'] == 'model.pdiparams'
    assert d['num_classes'] == 4 and d['class_names'] == ['0', '1', '2', '3']
    assert d['palette'] == generate_palette(4).tolist()  # the colors tools/predict.py uses
    assert d['input_shape'] == [-1, 3, -1, -1]
    assert d['output_op'] == 'argmax' and d['output_dtype'] == 'int32'
    assert d['transforms'] == [{'type': 'Resize', 'target_size': [96, 64], 'keep_ratio': True},
                               {'type': 'Normalize', 'mean': [123.675, 116.28, 103.53],
                                'std': [58.395, 57.12, 57.375]}]
    assert not [f for f in os.listdir(tmp_path) if f.startswith('.')], 'temporary export folder left behind'
    assert os.stat(tmp_path / 'out').st_mode & 0o077, 'export folder created with mode 0700'


def test_deploy_yaml_class_names_and_palette_come_from_the_val_dataset(tmp_path):
    """A dataset with names and colors (DemoShapes): deploy.yaml carries them, also where the
    dataset's files are not on the export machine (the class attributes are read then)."""
    from zoo.datasets.demo import DEMO_CLASSES, DEMO_PALETTE
    cfg = Config({**tiny_config(num_classes=len(DEMO_CLASSES)),
                  'val_dataset': {'type': 'DemoShapes', 'dataset_root': str(tmp_path / 'absent'), 'mode': 'val',
                                  'transforms': [{'type': 'Normalize'}]}})
    d = export_model(cfg, str(tmp_path / 'out'))
    assert d['class_names'] == list(DEMO_CLASSES)
    assert d['palette'] == [list(c) for c in DEMO_PALETTE]
    dcfg = infer.DeployConfig(str(tmp_path / 'out' / 'deploy.yaml'))
    assert dcfg.palette[:len(DEMO_PALETTE)].tolist() == [list(c) for c in DEMO_PALETTE]
    assert not dcfg.palette[len(DEMO_PALETTE):].any()  # black past the classes, as predict.py's PNGs


def test_export_is_quiet_unless_verbose(tmp_path):
    """Paddle's "PIR not support input out tensor" glog warning (a residual add under to_static)
    is dropped where it is produced; --verbose shows it."""
    from zoo.utils.quiet import filtered_stderr
    code = ('import os, sys; sys.path.insert(0, sys.argv[1]); from zoo.utils.quiet import filtered_stderr\n'
            'with filtered_stderr(verbose=sys.argv[2] == "1"):\n'
            '    os.write(2, b"W1129 eager_utils.cc:3441] Paddle static graph(PIR) not support input out tensor\\n")\n'
            '    os.write(2, b"a real problem\\n")\n')
    for verbose in ('0', '1'):
        r = subprocess.run([sys.executable, '-c', code, REPO, verbose], capture_output=True, text=True)
        assert 'a real problem' in r.stderr
        assert ('not support input out tensor' in r.stderr) == (verbose == '1')
    assert filtered_stderr  # the one implementation export uses


class SqueezeExcite(nn.Layer):
    """grouped dilated conv -> squeeze-and-excitation -> conv: the RegSeg D-block pattern whose
    channel scaling export rewrites for Paddle Inference (NHWC multiply)."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2D(3, 32, 3, padding=1)
        self.grouped = nn.Conv2D(32, 32, 3, padding=2, dilation=2, groups=2)
        self.fc1 = nn.Conv2D(32, 8, 1)
        self.fc2 = nn.Conv2D(8, 32, 1)
        self.cls = nn.Conv2D(32, 4, 1)

    def forward(self, x):
        f = F.relu(self.grouped(F.relu(self.conv0(x))))
        s = F.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(f, 1)))))
        return [F.interpolate(self.cls(s * f), paddle.shape(x)[2:], mode='bilinear')]


def test_paddle_inference_rewrites_keep_the_values(tmp_path):
    """Channel scaling traced in NHWC, adaptive pooling as matrix products: the fp32 and the bf16
    program (run in fp32) equal dygraph, and the rewrite is in the traced program."""
    from zoo.export import prepare_export_model, save_static
    paddle.seed(0)
    model = SqueezeExcite()
    model.eval()
    x = np.random.RandomState(0).uniform(-2, 2, (2, 3, 37, 53)).astype('float32')
    with paddle.no_grad():
        ref = model(paddle.to_tensor(x))[0].numpy()
    wrapper = prepare_export_model(model, 'none')
    for portable in (False, True):
        prefix = 'model_bf16' if portable else 'model'
        program, params = save_static(wrapper, str(tmp_path), [-1, 3, -1, -1], prefix=prefix, portable=portable)
        text = (tmp_path / program).read_text()
        assert '"1.transpose"' in text, 'channel scaling not rewritten'  # PIR JSON op names: 1.<op>
        assert ('"1.pool2d"' in text) != portable
        from paddle import inference
        c = inference.Config(str(tmp_path / program), str(tmp_path / params))
        c.disable_glog_info()
        c.enable_mkldnn()
        pred = inference.create_predictor(c)
        h = pred.get_input_handle('x')
        h.reshape(x.shape)
        h.copy_from_cpu(x)
        pred.run()
        assert_parity(ref, pred.get_output_handle(pred.get_output_names()[0]).copy_to_cpu(), prefix)


def test_deploy_transforms_spell_out_defaults_and_prefer_export_section():
    cfg = Config({**tiny_config(), 'val_dataset': {'type': 'Dataset', 'dataset_root': '.',
                                                   'transforms': [{'type': 'Normalize'}]}})
    assert deploy_transforms(cfg) == [{'type': 'Normalize', 'mean': [127.5] * 3, 'std': [127.5] * 3}]
    cfg = Config({**tiny_config(), 'export': {'transforms': [{'type': 'ResizeByShort', 'short_size': 32}]}})
    assert deploy_transforms(cfg) == [{'type': 'ResizeByShort', 'short_size': 32, 'max_size': -1}]


def test_argmax_and_softmax_outputs_and_fixed_shape(tmp_path):
    cfg = Config(tiny_config())
    paddle.seed(1)
    model = calibrate_bn(zoo.build_model(cfg))
    paddle.save(model.state_dict(), str(tmp_path / 'w.pdparams'))
    x = np.random.RandomState(1).uniform(-2, 2, (2, 3, 40, 56)).astype('float32')
    with paddle.no_grad():
        ref = model(paddle.to_tensor(x))[0].numpy()
    export_model(cfg, str(tmp_path / 'am'), model_path=str(tmp_path / 'w.pdparams'), output_op='argmax')
    out = infer.Predictor(infer.DeployConfig(str(tmp_path / 'am' / 'deploy.yaml')), cpu_threads=1).run(x)
    assert out.dtype == np.int32 and out.shape == (2, 40, 56)
    top2 = np.sort(ref, 1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > 1e-4
    assert (out == ref.argmax(1))[decided].all()

    export_model(cfg, str(tmp_path / 'sm'), model_path=str(tmp_path / 'w.pdparams'), output_op='softmax',
                 input_shape=[2, 3, 40, 56])
    dcfg = infer.DeployConfig(str(tmp_path / 'sm' / 'deploy.yaml'))
    assert dcfg.input_shape == [2, 3, 40, 56] and dcfg.output_dtype == 'float32'
    pred = infer.Predictor(dcfg, cpu_threads=1)
    prob = pred.run(x)
    np.testing.assert_allclose(prob, F.softmax(paddle.to_tensor(ref), axis=1).numpy(), atol=1e-5)
    with pytest.raises(infer.DeployError, match='exported for input_shape'):
        pred.run(x[:, :, :32])


def test_adaptive_pool_by_matmul_matches_native_for_odd_sizes():
    x = paddle.to_tensor(np.random.RandomState(0).rand(2, 3, 11, 17).astype('float32'))
    for s in (1, 2, 3, 6, (2, 5), (7, 4), 11):
        np.testing.assert_allclose(adaptive_avg_pool2d_by_matmul(x, s).numpy(), F.adaptive_avg_pool2d(x, s).numpy(),
                                   atol=1e-6)


@pytest.mark.skipif(not HAS_ONNX, reason='paddle2onnx / onnxruntime not installed (pip install -e .[onnx])')
def test_tiny_model_parity_paddle_inference_and_onnx(tmp_path):
    diffs = export_and_compare(tiny_config(), tmp_path, [(1, 3, 64, 96), (2, 3, 67, 101), (1, 3, 333, 517)])
    assert len(diffs) == 6


def test_bad_inputs_fail_in_one_line(tmp_path):
    cfg = Config(tiny_config())
    with pytest.raises(CheckpointError, match='does not exist'):
        export_model(cfg, str(tmp_path / 'a'), model_path=str(tmp_path / 'missing.pdparams'))
    other = zoo.build_model(Config(tiny_config(num_classes=7)))
    paddle.save(other.state_dict(), str(tmp_path / 'other.pdparams'))
    with pytest.raises(CheckpointError, match='shape mismatch'):
        export_model(cfg, str(tmp_path / 'b'), model_path=str(tmp_path / 'other.pdparams'))
    for bad in ([1, 3, 64], [1, 1, 64, 64], [1, 3, 0, 64]):
        with pytest.raises(ConfigError, match='--input_shape'):
            check_input_shape(bad)
    crop = copy.deepcopy(tiny_config())
    crop['val_dataset']['transforms'].insert(0, {'type': 'RandomCrop', 'crop_size': [32, 32]})
    with pytest.raises(ConfigError, match='RandomCrop cannot be deployed'):
        export_model(Config(crop), str(tmp_path / 'c'))
    assert not os.path.exists(tmp_path / 'c')


@pytest.mark.skipif(not os.path.isfile(os.path.join(REPO, 'zoo', 'utils', 'cli.py')),
                    reason='zoo/utils/cli.py (main_wrapper) not written yet')
def test_cli_exits_with_one_line_on_a_missing_config(tmp_path):
    r = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'export.py'), '--config',
                        str(tmp_path / 'nope.yml'), '--save_dir', str(tmp_path / 'o')],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.strip().splitlines() + r.stdout.strip().splitlines() if 'nope.yml' in ln]
    assert len(lines) == 1 and 'does not exist' in lines[0] and 'Traceback' not in r.stderr


# -- every model in the repo ----------------------------------------------------------

def model_configs():
    return sorted(p for p in glob.glob(os.path.join(REPO, 'configs', '**', '*.yml'), recursive=True)
                  if '_base_' not in p.split(os.sep))
