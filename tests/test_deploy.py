"""deploy/python/infer.py: preprocessing identical to the val transforms, masks, benchmark mode,
backends, one-line errors, and no dependency on the training library."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest
import yaml

import zoo
from zoo.datasets.base import Compose
from zoo.export import export_model
from zoo.utils.config import Config
from zoo.utils.registry import MODELS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFER = os.path.join(REPO, 'deploy', 'python', 'infer.py')
sys.path.insert(0, os.path.dirname(INFER))
import infer  # noqa: E402

HAS_ONNX = importlib.util.find_spec('paddle2onnx') is not None and importlib.util.find_spec('onnxruntime') is not None
MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


@MODELS.register()
class DeployTestNet(nn.Layer):
    def __init__(self, num_classes=5, align_corners=False, pretrained=None):
        super().__init__()
        self.num_classes = num_classes
        self.conv = nn.Conv2D(3, 8, 3, stride=2, padding=1)
        self.cls = nn.Conv2D(8, num_classes, 1)

    def forward(self, x):
        return [F.interpolate(self.cls(F.relu(self.conv(x))), paddle.shape(x)[2:], mode='bilinear')]


def config(transforms):
    return Config({'model': {'type': 'DeployTestNet', 'num_classes': 5},
                   'val_dataset': {'type': 'Dataset', 'dataset_root': '.', 'num_classes': 5,
                                   'transforms': transforms}})


TRANSFORMS = [{'type': 'Resize', 'target_size': [64, 48], 'keep_ratio': True},
              {'type': 'Normalize', 'mean': MEAN, 'std': STD}]


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """One exported tiny model (argmax, plus ONNX when available), its weights and images."""
    root = tmp_path_factory.mktemp('deploy')
    paddle.seed(3)
    model = zoo.build_model(config(TRANSFORMS))
    model.eval()
    paddle.save(model.state_dict(), str(root / 'w.pdparams'))
    export_model(config(TRANSFORMS), str(root / 'export'), model_path=str(root / 'w.pdparams'),
                 fmt='onnx' if HAS_ONNX else 'paddle')
    rng = np.random.RandomState(0)
    os.makedirs(root / 'images' / 'sub')
    sizes = {'a.png': (40, 60), 'b.jpg': (40, 60), os.path.join('sub', 'c.png'): (53, 71)}
    for name, (h, w) in sizes.items():
        img = rng.randint(0, 255, (h, w, 3)).astype('uint8')
        cv2.imwrite(str(root / 'images' / name), img, [cv2.IMWRITE_JPEG_QUALITY, 100])
    return root, model, sizes


def run_cli(*args, cwd=None, block_zoo=True):
    """Run infer.py in a fresh interpreter where ``import zoo`` fails (a deployment machine)."""
    code = ('import sys, runpy; sys.modules["zoo"] = None; sys.argv = sys.argv[1:]; '
            'runpy.run_path(sys.argv[0], run_name="__main__")') if block_zoo else None
    cmd = [sys.executable, '-c', code, INFER, *map(str, args)] if block_zoo else [sys.executable, INFER, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or REPO, timeout=300)


@pytest.mark.parametrize('transforms', [
    TRANSFORMS,
    [{'type': 'Resize', 'target_size': [50, 30]}, {'type': 'Normalize'}],
    [{'type': 'ResizeByShort', 'short_size': 37, 'max_size': 50}, {'type': 'Normalize', 'mean': MEAN, 'std': STD}],
    [{'type': 'ResizeByShort', 'short_size': 45}],
])
def test_preprocessing_equals_the_val_transforms(transforms, tmp_path):
    from zoo.export import deploy_transforms
    d = {'Deploy': {'model': 'model.json', 'params': 'model.pdiparams', 'transforms': deploy_transforms(config(transforms))}}
    for f in ('model.json', 'model.pdiparams'):
        (tmp_path / f).write_text('')
    (tmp_path / 'deploy.yaml').write_text(yaml.safe_dump(d))
    dcfg = infer.DeployConfig(str(tmp_path / 'deploy.yaml'))
    img = np.random.RandomState(0).randint(0, 255, (41, 67, 3)).astype('float32')
    ours = infer.preprocess(img.copy(), dcfg.transforms)
    theirs = Compose(transforms)({'img': img.copy(), 'label': None})['img'].transpose(2, 0, 1)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


def expected_mask(model, path):
    """What training-time val would predict: val transforms, model, resize back, argmax."""
    img = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB).astype('float32')
    x = Compose(TRANSFORMS)({'img': img, 'label': None})['img'].transpose(2, 0, 1)[None]
    with paddle.no_grad():
        logits = model(paddle.to_tensor(np.ascontiguousarray(x)))[0]
    return logits.argmax(1).numpy()[0].astype('int32'), img.shape[:2]


def test_cli_writes_masks_for_a_folder_without_the_training_library(exported, tmp_path):
    root, model, sizes = exported
    r = run_cli('--config', root / 'export' / 'deploy.yaml', '--image_path', root / 'images',
                '--save_dir', tmp_path / 'out', '--batch_size', 2, '--cpu_threads', 1)
    assert r.returncode == 0, r.stderr
    for name, (h, w) in sizes.items():
        mask = cv2.imread(str(tmp_path / 'out' / (os.path.splitext(name)[0] + '.png')))
        assert mask is not None and mask.shape == (h, w, 3), name
        lab, _ = expected_mask(model, str(root / 'images' / name))
        lab = cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(mask, infer.pseudo_color(lab), err_msg=name)


def test_benchmark_mode_reports_stage_times_and_json(exported, tmp_path):
    root, _, _ = exported
    r = run_cli('--config', root / 'export' / 'deploy.yaml', '--image_path', root / 'images' / 'a.png',
                '--save_dir', tmp_path / 'out', '--benchmark', '--warmup', 1, '--repeats', 3,
                '--enable_mkldnn', 'False', '--json', tmp_path / 'b.json')
    assert r.returncode == 0, r.stderr
    assert 'inference' in r.stdout and 'images/s' in r.stdout and 'oneDNN off' in r.stdout
    stats = json.loads((tmp_path / 'b.json').read_text())
    for stage in ('preprocess', 'inference', 'postprocess'):
        assert set(stats[stage]) == {'mean', 'p50', 'p90'} and stats[stage]['mean'] > 0
        assert stats[stage]['p50'] <= stats[stage]['p90'] + 1e-9
    assert stats['images_per_second'] > 0 and stats['peak_rss_mb'] > 50 and stats['repeats'] == 3


@pytest.mark.skipif(not HAS_ONNX, reason='paddle2onnx / onnxruntime not installed (pip install -e .[onnx])')
def test_onnxruntime_backend_gives_the_same_masks(exported, tmp_path):
    root, _, _ = exported
    for backend in ('paddle', 'onnxruntime'):
        r = run_cli('--config', root / 'export' / 'deploy.yaml', '--image_path', root / 'images',
                    '--save_dir', tmp_path / backend, '--backend', backend, '--cpu_threads', 1)
        assert r.returncode == 0, r.stderr
    for name in ('a.png', 'b.png', os.path.join('sub', 'c.png')):
        np.testing.assert_array_equal(cv2.imread(str(tmp_path / 'paddle' / name)),
                                      cv2.imread(str(tmp_path / 'onnxruntime' / name)))


def test_legacy_program_name_is_accepted(exported, tmp_path):
    root, _, _ = exported
    dst = tmp_path / 'export'
    shutil.copytree(root / 'export', dst)
    d = yaml.safe_load((dst / 'deploy.yaml').read_text())
    d['Deploy']['model'] = 'model.pdmodel'  # PaddleSeg 2.x name; Paddle 3 wrote model.json
    (dst / 'deploy.yaml').write_text(yaml.safe_dump(d))
    dcfg = infer.DeployConfig(str(dst / 'deploy.yaml'))
    assert dcfg.model_file.endswith('model.json')
    out = infer.Predictor(dcfg, cpu_threads=1).run(np.zeros((1, 3, 32, 48), 'float32'))
    assert out.shape == (1, 32, 48)


def _broken(exported, tmp_path, edit):
    root, _, _ = exported
    dst = tmp_path / 'export'
    shutil.copytree(root / 'export', dst)
    edit(dst)
    return dst / 'deploy.yaml'


@pytest.mark.parametrize('case, expect', [
    ('missing_yaml', 'does not exist'),
    ('no_deploy_key', 'expected a top-level "Deploy"'),
    ('missing_params', 'params: file'),
    ('missing_program', 'program file'),
    ('bad_transform', 'transforms.0'),
    ('bad_image', 'cannot be decoded'),
    ('missing_image', 'does not exist'),
    ('wrong_shape', 'exported for input_shape'),
    ('mismatched_params', 'not the file this deploy.yaml was exported with'),
])
def test_bad_input_fails_in_one_line(case, expect, exported, tmp_path):
    root, _, _ = exported
    image = root / 'images' / 'a.png'
    cfg_path = root / 'export' / 'deploy.yaml'

    def yaml_edit(fn):
        def edit(d):
            y = yaml.safe_load((d / 'deploy.yaml').read_text())
            fn(y)
            (d / 'deploy.yaml').write_text(yaml.safe_dump(y))
        return edit

    if case == 'missing_yaml':
        cfg_path = tmp_path / 'nope' / 'deploy.yaml'
    elif case == 'no_deploy_key':
        cfg_path = _broken(exported, tmp_path, lambda d: (d / 'deploy.yaml').write_text('model: model.json\n'))
    elif case == 'missing_params':
        cfg_path = _broken(exported, tmp_path, lambda d: os.remove(d / 'model.pdiparams'))
    elif case == 'missing_program':
        cfg_path = _broken(exported, tmp_path, lambda d: os.remove(d / 'model.json'))
    elif case == 'bad_transform':
        cfg_path = _broken(exported, tmp_path, yaml_edit(lambda y: y['Deploy'].update(transforms=[{'type': 'Blur'}])))
    elif case == 'bad_image':
        image = tmp_path / 'x.png'
        image.write_bytes(b'not an image')
    elif case == 'missing_image':
        image = tmp_path / 'missing.png'
    elif case == 'wrong_shape':
        cfg_path = _broken(exported, tmp_path, yaml_edit(lambda y: y['Deploy'].update(input_shape=[1, 3, 64, 64])))
    elif case == 'mismatched_params':
        other = tmp_path / 'other'
        export_model(Config({'model': {'type': 'DeployTestNet', 'num_classes': 9}}), str(other))
        cfg_path = _broken(exported, tmp_path, lambda d: shutil.copy(other / 'model.pdiparams', d / 'model.pdiparams'))
    r = run_cli('--config', cfg_path, '--image_path', image, '--save_dir', tmp_path / 'out')
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert lines and lines[-1].startswith('error: ') and expect in lines[-1], r.stderr[-2000:]
    assert 'Traceback' not in r.stderr


def test_benchmark_row_compares_the_three_paths(tmp_path):
    """zoo.benchmark (tools/benchmark.py): one row with params, FLOPs, each path's latency and
    the ratios, and the exported logits equal to dygraph's."""
    from zoo.benchmark import benchmark_config, count_flops, format_rows, markdown_rows
    cfg = config(TRANSFORMS)
    model = zoo.build_model(cfg)
    # conv 3->8 3x3 stride 2 on 32x48 (16x24 out) + conv 8->5 1x1
    assert count_flops(model, [1, 3, 32, 48]) == 16 * 24 * 8 * 27 + 16 * 24 * 5 * 8
    row = benchmark_config(cfg, [1, 3, 32, 48], threads=1, warmup=0, iters=1, onnx=HAS_ONNX,
                           work_dir=str(tmp_path))
    assert row['params_M'] == pytest.approx((8 * 27 + 8 + 5 * 8 + 5) / 1e6)
    assert row['dygraph_ms'] > 0 and row['infer_ms'] > 0 and row['max_abs_diff'] < 1e-4
    assert row['dygraph/infer'] == pytest.approx(row['dygraph_ms'] / row['infer_ms'])
    if HAS_ONNX:
        assert row['infer/ort'] == pytest.approx(row['infer_ms'] / row['ort_ms'])
    assert 'DeployTestNet' in format_rows([row]) and markdown_rows([row]).count('\n') == 2
