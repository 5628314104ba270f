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
from zoo.engine.visual import generate_palette
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
    from PIL import Image
    palette = generate_palette(5)
    for name, (h, w) in sizes.items():
        mask = Image.open(str(tmp_path / 'out' / (os.path.splitext(name)[0] + '.png')))
        assert mask.mode == 'P' and mask.size == (w, h), name  # palette PNG: pixel value = class id
        lab, _ = expected_mask(model, str(root / 'images' / name))
        lab = cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST)
        np.testing.assert_array_equal(np.array(mask), lab, err_msg=name)
        assert mask.getpalette()[:15] == palette.reshape(-1).tolist()


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
    ('classes_beyond_num_classes', 'but num_classes is 1'),
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
    elif case == 'classes_beyond_num_classes':  # a hand-written deploy.yaml (no sha256) over another model
        cfg_path = _broken(exported, tmp_path, yaml_edit(lambda y: (y['Deploy'].pop('sha256', None),
                                                                    y['Deploy'].update(num_classes=1))))
    r = run_cli('--config', cfg_path, '--image_path', image, '--save_dir', tmp_path / 'out')
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert lines and lines[-1].startswith('error: ') and expect in lines[-1], r.stderr[-2000:]
    assert 'Traceback' not in r.stderr


@MODELS.register()
class ColorNet(nn.Layer):
    """Class = the strongest of R, G, B (classes 3-5 never win), with margins far above float32
    noise, so every backend predicts exactly what dygraph predicts."""

    def __init__(self, num_classes=6, align_corners=False, pretrained=None):
        super().__init__()
        self.num_classes = num_classes
        self.cls = nn.Conv2D(3, num_classes, 1)
        w = np.zeros((num_classes, 3, 1, 1), 'float32')
        w[0, 0], w[1, 1], w[2, 2] = 10.0, 10.0, 10.0
        b = np.full((num_classes,), -100.0, 'float32')
        b[:3] = [0.0, 0.01, 0.02]  # ties between channels go to the higher class by 0.01
        self.cls.weight.set_value(w)
        self.cls.bias.set_value(b)

    def forward(self, x):
        return [self.cls(x)]


@pytest.fixture(scope='module')
def color_export(tmp_path_factory):
    """ColorNet exported with DemoShapes' classes and palette (the dataset files are absent)."""
    root = tmp_path_factory.mktemp('color')
    cfg = Config({'model': {'type': 'ColorNet', 'num_classes': 6},
                  'val_dataset': {'type': 'DemoShapes', 'dataset_root': str(root / 'no_data'), 'mode': 'val',
                                  'transforms': [{'type': 'Normalize'}]}})
    model = zoo.build_model(cfg)
    paddle.save(model.state_dict(), str(root / 'w.pdparams'))
    export_model(cfg, str(root / 'export'), model_path=str(root / 'w.pdparams'))
    rng = np.random.RandomState(1)
    os.makedirs(root / 'images')
    for name in ('a.png', 'b.jpg', 'c.bmp'):
        cv2.imwrite(str(root / 'images' / name), rng.randint(0, 255, (30, 44, 3)).astype('uint8'))
    return root, cfg, model


def test_palette_png_equals_predict_py_pixel_for_pixel(color_export, tmp_path):
    """infer.py's mask and tools/predict.py's pseudo_color_prediction PNG: same class ids, same
    palette (DemoShapes' colors, from deploy.yaml)."""
    from PIL import Image
    root, cfg, _ = color_export
    r = run_cli('--config', root / 'export' / 'deploy.yaml', '--image_path', root / 'images', '--save_dir',
                tmp_path / 'deploy', '--cpu_threads', 1)
    assert r.returncode == 0, r.stderr
    # what tools/predict.py does (ColorNet is registered in this process only)
    from zoo.engine.predictor import load_trained_model, predict
    from zoo.engine.visual import get_palette
    from zoo.utils.registry import DATASETS
    model = load_trained_model(cfg, str(root / 'w.pdparams'))
    palette = get_palette(6, DATASETS['DemoShapes'])
    predict(model, str(root / 'images'), cfg.dic['val_dataset']['transforms'], str(tmp_path / 'predict'), palette)
    for name in ('a', 'b', 'c'):
        ours = Image.open(str(tmp_path / 'deploy' / f'{name}.png'))
        theirs = Image.open(str(tmp_path / 'predict' / 'pseudo_color_prediction' / f'{name}.png'))
        assert ours.mode == theirs.mode == 'P'
        np.testing.assert_array_equal(np.array(ours), np.array(theirs), err_msg=name)  # class ids
        assert ours.getpalette() == theirs.getpalette(), name
        assert set(np.unique(np.array(ours))) <= {0, 1, 2}
        np.testing.assert_array_equal(np.array(ours.convert('RGB')), np.array(theirs.convert('RGB')))


def test_overlays_keep_the_input_format(color_export, tmp_path):
    from zoo.engine.visual import colorize, overlay
    root, _, model = color_export
    r = run_cli('--config', root / 'export' / 'deploy.yaml', '--image_path', root / 'images', '--save_dir',
                tmp_path, '--save_overlay', '--cpu_threads', 1)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / 'added_prediction')) == ['a.png', 'b.jpg', 'c.bmp']
    img = cv2.cvtColor(cv2.imread(str(root / 'images' / 'a.png')), cv2.COLOR_BGR2RGB)
    x = (img.astype('float32') - 127.5) / 127.5
    with paddle.no_grad():
        lab = model(paddle.to_tensor(x.transpose(2, 0, 1)[None]))[0].numpy()[0].argmax(0)
    from zoo.datasets.demo import DEMO_PALETTE
    want = overlay(img, colorize(lab, np.asarray(DEMO_PALETTE, 'uint8')))  # predict.py's blend
    got = cv2.cvtColor(cv2.imread(str(tmp_path / 'added_prediction' / 'a.png')), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize('flags, ok, expect', [
    (['--with_argmax'], True, 'saved'),
    (['--print_detail'], True, 'saved'),
    (['--with_argmax', 'False'], False, '--output_op'),
    (['--enable_auto_tune'], False, '--use_trt'),
    (['--precision', 'int8'], False, 'tools/quant.py'),
    (['--backend', 'onnxruntime', '--precision', 'bf16'], False, 'no bf16'),
    (['--precision', 'fp16'], False, 'GPU'),
    (['--device', 'gpu'], False, 'no CUDA'),  # a CPU build: said, not silently run on the CPU
])
def test_paddleseg_flag_spellings_and_unsupported_paths(flags, ok, expect, color_export, tmp_path):
    root, _, _ = color_export
    r = run_cli('--config', root / 'export' / 'deploy.yaml', '--image_path', root / 'images' / 'a.png',
                '--save_dir', tmp_path, '--cpu_threads', 1, *flags)
    if ok:
        assert r.returncode == 0 and expect in r.stdout, r.stderr[-2000:]
    else:
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and expect in lines[-1] and 'Traceback' not in r.stderr, r.stderr[-2000:]


def test_cpu_threads_default_to_the_cores_and_bf16_needs_the_instructions(color_export, monkeypatch):
    root, _, _ = color_export
    dcfg = infer.DeployConfig(str(root / 'export' / 'deploy.yaml'))
    assert infer.Predictor(dcfg).threads == len(os.sched_getaffinity(0))
    assert infer.has_bf16({'amx_bf16'}) and infer.has_bf16({'avx512_bf16'}) and not infer.has_bf16({'avx512f'})
    monkeypatch.setattr(infer, 'has_bf16', lambda flags=None: False)
    with pytest.raises(infer.DeployError, match='no bfloat16 instructions'):
        infer.Predictor(dcfg, precision='bf16')
