"""Deploy accuracy on a trained tiny model: every installed backend x precision predicts what
dygraph predicts (reduced precisions within their mIoU budget: bf16 0.3 points, int8 1.0), and
``infer.py --dataset_config`` scores the exported model exactly as tools/val.py does.

The model is trained here, in dygraph, on the generated demo data (a few seconds): reduced
precision is judged on trained weights, never on random ones (their logit margins are tiny).
"""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest

import zoo
from zoo.datasets.meta import DEMO_CLASSES
from zoo.datasets.prepare.demo import generate_demo_dataset
from zoo.engine.evaluator import evaluate
from zoo.export import export_model
from zoo.export.quant import calibration_inputs, quantize_onnx
from zoo.utils.config import Config
from zoo.utils.registry import MODELS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFER = os.path.join(REPO, 'deploy', 'python', 'infer.py')
sys.path.insert(0, os.path.dirname(INFER))
import infer  # noqa: E402

HAS_ONNX = all(importlib.util.find_spec(m) for m in ('paddle2onnx', 'onnxruntime', 'onnx'))
BUDGET = {'fp32': 0.0, 'bf16': 0.3, 'int8': 1.0}  # mIoU points a path may lose against dygraph fp32
PATHS = [('paddle', 'fp32'), ('paddle', 'bf16'), ('onnxruntime', 'fp32'), ('onnxruntime', 'int8'),
         ('openvino', 'fp32'), ('openvino', 'bf16'),
         # OpenVINO 2026.4 runs the same QDQ file as ONNX Runtime (which stays within 0.1 point here) but
         # loses ~8 mIoU points on this tiny model (classes shift: 'ring' 85 -> 8 pixels of an image),
         # whichever convs are quantized, per-tensor or per-channel, u8 or s8 activations; on the trained
         # demo Fast-SCNN and DeepLabV3 it is within 0.15 point (docs/benchmark.md). Cause not found.
         pytest.param('openvino', 'int8', marks=pytest.mark.xfail(reason='OpenVINO int8 loses ~8 mIoU points on '
                                                                       'this tiny model', strict=False))]


@MODELS.register()
class TinyPyramidNet(nn.Layer):
    """Two strided conv-BN-ReLU, pyramid pooling (1, 2, 3 bins: the adaptive pooling that needs the
    bf16 program), a classifier, bilinear resize to the input."""

    def __init__(self, num_classes, align_corners=False, width=24, pretrained=None):
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(nn.Conv2D(3, width, 3, stride=2, padding=1), nn.BatchNorm2D(width), nn.ReLU(),
                                  nn.Conv2D(width, width, 3, stride=2, padding=1), nn.BatchNorm2D(width), nn.ReLU(),
                                  nn.Conv2D(width, width, 3, padding=1), nn.BatchNorm2D(width), nn.ReLU())
        self.pools = nn.LayerList([nn.Sequential(nn.AdaptiveAvgPool2D(s), nn.Conv2D(width, 8, 1)) for s in (1, 2, 3)])
        self.cls = nn.Conv2D(width + 24, num_classes, 1)

    def forward(self, x):
        f = self.stem(x)
        size = paddle.shape(f)[2:]
        feats = [f] + [F.interpolate(p(f), size, mode='bilinear') for p in self.pools]
        return [F.interpolate(self.cls(paddle.concat(feats, 1)), paddle.shape(x)[2:], mode='bilinear')]


def demo_config(root):
    ds = {'type': 'DemoShapes', 'dataset_root': root}
    norm = [{'type': 'Normalize'}]
    return Config({'model': {'type': 'TinyPyramidNet', 'num_classes': len(DEMO_CLASSES)},
                   'train_dataset': {**ds, 'mode': 'train', 'transforms': [{'type': 'RandomHorizontalFlip'}] + norm},
                   'val_dataset': {**ds, 'mode': 'val', 'transforms': norm},
                   'test_config': {'is_slide': False}})


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """(config, model, weights, export folder with model_int8.onnx) of a tiny model trained on
    the demo data until it is clearly better than chance."""
    root = tmp_path_factory.mktemp('acc')
    generate_demo_dataset(str(root / 'data'), num_train=48, num_val=8, height=64, width=128, seed=0)
    cfg = demo_config(str(root / 'data'))
    paddle.seed(0)
    model = zoo.build_model(cfg)
    train = zoo.build_dataset(cfg, 'train')
    opt = paddle.optimizer.Adam(learning_rate=0.01, parameters=model.parameters())
    rng = np.random.RandomState(0)
    model.train()
    for step in range(240):
        idx = rng.choice(len(train), 8, replace=False)
        x, y = zip(*(train[int(i)] for i in idx))
        logits = model(paddle.to_tensor(np.stack(x)))[0]
        loss = F.cross_entropy(logits, paddle.to_tensor(np.stack(y))[:, None], axis=1, ignore_index=255)
        loss.backward()
        opt.step()
        opt.clear_grad()
    model.eval()
    weights = str(root / 'w.pdparams')
    paddle.save(model.state_dict(), weights)
    inputs = list(calibration_inputs(cfg, 16))

    def add_int8(folder, deploy):
        quantize_onnx(os.path.join(folder, deploy['onnx']), os.path.join(folder, 'model_int8.onnx'), inputs)
        deploy['onnx_int8'] = 'model_int8.onnx'

    export_model(cfg, str(root / 'export'), model_path=weights, fmt='onnx' if HAS_ONNX else 'paddle',
                 extra_step=add_int8 if HAS_ONNX else None)
    res = evaluate(model, zoo.build_dataset(cfg, 'val'), print_detail=False)
    assert res['mIoU'] > 0.45, f'the tiny model did not learn (mIoU {res["mIoU"]:.3f})'
    return cfg, model, weights, root / 'export', res


def _why_not(backend, precision):
    if backend != 'paddle' and not (HAS_ONNX and importlib.util.find_spec(backend)):
        return f'{backend} not installed'
    if precision == 'bf16' and not infer.has_bf16():
        return 'no bf16 instructions on this CPU'
    return None


def test_dataset_config_miou_equals_val_py(trained):
    """Paddle Inference fp32 through --dataset_config == tools/val.py's evaluate(), to 1e-6."""
    cfg, _, _, export, ref = trained
    pred = infer.Predictor(infer.DeployConfig(str(export / 'deploy.yaml')), cpu_threads=2)
    res = infer.evaluate_dataset(pred, cfg)
    for key in ('mIoU', 'aAcc', 'mAcc'):
        assert abs(res[key] - ref[key]) <= 1e-6, (key, res[key], ref[key])
    np.testing.assert_array_equal(res['confusion_matrix'], ref['confusion_matrix'])


@pytest.mark.parametrize('backend, precision', PATHS)
def test_every_path_predicts_what_dygraph_predicts(backend, precision, trained):
    why = _why_not(backend, precision)
    if why:
        pytest.skip(why)
    cfg, model, _, export, ref = trained
    pred = infer.Predictor(infer.DeployConfig(str(export / 'deploy.yaml')), backend=backend, precision=precision,
                           cpu_threads=2)
    dataset = zoo.build_dataset(cfg, 'val')
    agree = []
    for i in range(len(dataset)):
        img = dataset.load_sample(i)['img']
        ours = next(infer.predict_images(pred, [(None, img)]))[1]
        x = (img - 127.5) / 127.5
        with paddle.no_grad():
            theirs = model(paddle.to_tensor(x.transpose(2, 0, 1)[None].astype('float32')))[0].numpy()[0].argmax(0)
        agree.append((ours == theirs).mean())
    res = infer.evaluate_dataset(pred, cfg)
    delta = 100 * (res['mIoU'] - ref['mIoU'])
    assert delta >= -BUDGET[precision] - 1e-9, f'{backend} {precision}: mIoU {delta:+.3f} points vs dygraph'
    floor = {'fp32': 0.9999, 'bf16': 0.99, 'int8': 0.98}[precision]
    assert np.mean(agree) >= floor, f'{backend} {precision}: argmax agreement {np.mean(agree):.4f}'


def test_cli_scores_a_dataset_and_writes_json(trained, tmp_path):
    cfg, _, _, export, ref = trained
    cfg_path = tmp_path / 'cfg.yml'
    import yaml
    cfg_path.write_text(yaml.safe_dump(cfg.dic))
    code = ('import sys, runpy; sys.path.insert(0, sys.argv[1]); import test_deploy_accuracy; '
            'sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name="__main__")')
    r = subprocess.run([sys.executable, '-c', code, os.path.dirname(os.path.abspath(__file__)), INFER,
                        '--config', str(export / 'deploy.yaml'), '--dataset_config', str(cfg_path),
                        '--json', str(tmp_path / 'm.json'), '--cpu_threads', '2'],
                       capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    assert r.returncode == 0, r.stderr[-2000:]
    assert f'mIoU {100 * ref["mIoU"]:.2f}' in r.stdout
    import json
    assert abs(json.loads((tmp_path / 'm.json').read_text())['mIoU'] - ref['mIoU']) <= 1e-6
