"""predict() writes PaddleSeg's two outputs; tools/val.py and tools/predict.py end to end on a tiny
model, and their one-line errors."""
import importlib.util
import os
import subprocess
import sys

import cv2
import numpy as np
import paddle
import pytest
import yaml
from PIL import Image

from zoo.engine.predictor import list_images, predict
from zoo.engine.visual import colorize, generate_palette, get_palette, overlay
from zoo.utils.errors import ConfigError, DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ThresholdNet(paddle.nn.Layer):
    """Class 1 where the red channel is above 128, else class 0 (logits = +-(R - 128))."""

    align_corners = False

    def forward(self, x):
        r = x[:, 0:1] - 128.0
        return [paddle.concat([-r, r], axis=1)]


def write_images(folder):
    os.makedirs(os.path.join(folder, 'sub'), exist_ok=True)
    rgb = np.zeros((6, 10, 3), np.uint8)
    rgb[:, 5:, 0] = 200  # right half red -> class 1
    cv2.imwrite(os.path.join(folder, 'a.png'), rgb[:, :, ::-1])
    cv2.imwrite(os.path.join(folder, 'sub', 'b.jpg'), rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    with open(os.path.join(folder, 'notes.txt'), 'w') as f:
        f.write('not an image')
    return rgb


def test_predict_writes_palette_png_and_overlay(tmp_path):
    rgb = write_images(str(tmp_path / 'imgs'))
    palette = get_palette(2, custom_color=[0, 0, 0, 255, 0, 0])
    written = predict(ThresholdNet(), str(tmp_path / 'imgs'), [], str(tmp_path / 'out'), palette)
    out = tmp_path / 'out'
    assert sorted(os.path.relpath(p, out) for pair in written for p in pair) == sorted([
        'pseudo_color_prediction/a.png', 'pseudo_color_prediction/sub/b.png',
        'added_prediction/a.jpg', 'added_prediction/sub/b.jpg'])
    want = np.zeros((6, 10), np.int64)
    want[:, 5:] = 1
    png = Image.open(out / 'pseudo_color_prediction' / 'a.png')
    assert png.mode == 'P'
    np.testing.assert_array_equal(np.asarray(png), want)
    assert png.getpalette()[:6] == [0, 0, 0, 255, 0, 0]
    added = cv2.imread(str(out / 'added_prediction' / 'a.jpg'))[:, :, ::-1]
    expected = overlay(rgb, colorize(want, palette), 0.4)
    assert added.shape == (6, 10, 3)
    for cols in (slice(0, 2), slice(8, 10)):  # away from the edge, where JPEG rings
        assert np.abs(added[:, cols].astype(int) - expected[:, cols]).max() <= 4


def test_palette_helpers():
    pal = generate_palette(5)
    assert pal[0].tolist() == [0, 0, 0] and pal[1].tolist() == [128, 0, 0] and pal[2].tolist() == [0, 128, 0]
    assert len({tuple(p) for p in generate_palette(64)}) == 64
    lab = np.array([[0, 1], [255, 9]])
    col = colorize(lab, pal)
    assert col[1, 0].tolist() == [0, 0, 0] and col[1, 1].tolist() == [0, 0, 0] and col[0, 1].tolist() == [128, 0, 0]

    class WithPalette:
        PALETTE = ((1, 2, 3), (4, 5, 6))
    assert get_palette(3, WithPalette)[:2].tolist() == [[1, 2, 3], [4, 5, 6]]
    with pytest.raises(ConfigError):
        get_palette(3, custom_color=[1, 2])


def test_list_images_errors(tmp_path):
    with pytest.raises(DataError, match='does not exist'):
        list_images(str(tmp_path / 'nope.png'))
    os.makedirs(tmp_path / 'empty')
    with pytest.raises(DataError, match='no .* images'):
        list_images(str(tmp_path / 'empty'))


# -- the tools -------------------------------------------------------------------------------

def load_tool(name):
    spec = importlib.util.spec_from_file_location(f'tool_{name}', os.path.join(ROOT, 'tools', f'{name}.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def trained(tmp_path):
    """A tiny dataset, a config for TinySegNet and its saved weights."""
    from _tiny import TinySegNet, make_tiny_dataset  # noqa: F401  (registers TinySegNet)
    root = make_tiny_dataset(str(tmp_path / 'data'), n=2, size=16)
    ds = {'type': 'Dataset', 'dataset_root': root, 'val_path': 'list.txt', 'num_classes': 3, 'mode': 'val',
          'transforms': [{'type': 'Normalize'}]}
    cfg = {'model': {'type': 'TinySegNet', 'num_classes': 3}, 'val_dataset': ds,
           'test_config': {'is_slide': True, 'crop_size': [12, 12], 'stride': [8, 8]}}
    cfg_path = tmp_path / 'tiny.yml'
    cfg_path.write_text(yaml.safe_dump(cfg))
    paddle.seed(0)
    weights = tmp_path / 'model.pdparams'
    paddle.save(TinySegNet(num_classes=3).state_dict(), str(weights))
    return str(cfg_path), str(weights), root


def test_val_and_predict_tools_end_to_end(trained, tmp_path):
    import json
    cfg, weights, root = trained
    load_tool('val').main(['--config', cfg, '--model_path', weights, '--device', 'cpu', '--aug_eval',
                           '--flip_horizontal', '--save_dir', str(tmp_path / 'val')])
    with open(tmp_path / 'val' / 'metrics.json') as f:
        doc = json.load(f)
    assert doc['data']['num_images'] == 2 and doc['model']['weights'] == os.path.abspath(weights)
    assert len(doc['model']['weights_sha256']) == 64
    assert doc['protocol']['inference']['flip_horizontal'] is True and doc['protocol']['inference']['mode'] == 'slide'
    assert 'loss' not in doc  # flipped passes are merged probabilities: no loss
    for name in ('confusion_matrix.png', 'per_class_iou.png', 'samples.png'):
        assert os.path.isfile(tmp_path / 'val' / name)
    load_tool('predict').main(['--config', cfg, '--model_path', weights, '--device', 'cpu',
                               '--image_path', os.path.join(root, 'img'), '--save_dir', str(tmp_path / 'res')])
    for name in ('0', '1'):
        assert os.path.isfile(tmp_path / 'res' / 'pseudo_color_prediction' / f'{name}.png')
        assert os.path.isfile(tmp_path / 'res' / 'added_prediction' / f'{name}.jpg')


class CityscapesIds(paddle.nn.Layer):
    """Predicts train id = column index (0..18) on a 19-column image."""

    align_corners = False
    num_classes = 19

    def forward(self, x):
        w = x.shape[3]
        cols = paddle.arange(w, dtype='float32').reshape([1, 1, 1, w])
        classes = paddle.arange(19, dtype='float32').reshape([1, 19, 1, 1])
        return [-paddle.abs(cols - classes).expand([x.shape[0], 19, x.shape[2], w])]


def test_predict_cityscapes_format_writes_label_ids(tmp_path):
    from zoo.engine.predictor import cityscapes_label_ids
    os.makedirs(tmp_path / 'leftImg8bit' / 'aachen')
    name = 'aachen_000000_000019_leftImg8bit'
    cv2.imwrite(str(tmp_path / 'leftImg8bit' / 'aachen' / f'{name}.png'), np.zeros((3, 19, 3), np.uint8))
    written = predict(CityscapesIds(), str(tmp_path / 'leftImg8bit'), [], str(tmp_path / 'out'),
                      generate_palette(19), output_format='cityscapes')
    out = tmp_path / 'out' / 'cityscapes_results' / 'aachen' / f'{name}.png'
    assert written == [(str(out),)]
    ids = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert ids.dtype == np.uint8 and ids.shape == (3, 19)  # one channel, the image's size
    # cityscapesScripts' table: trainId 0..18 -> road 7, sidewalk 8, building 11, ..., bicycle 33
    want = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
    assert ids[0].tolist() == want and (ids == ids[0]).all()
    assert cityscapes_label_ids(np.array([255, -1, 19])).tolist() == [0, 0, 0]  # unlabeled
    assert not os.path.exists(tmp_path / 'out' / 'pseudo_color_prediction')


def test_predict_cityscapes_format_needs_19_classes(tmp_path):
    write_images(str(tmp_path / 'imgs'))
    net = ThresholdNet()
    net.num_classes = 2
    with pytest.raises(ConfigError, match='19 Cityscapes train ids'):
        predict(net, str(tmp_path / 'imgs'), [], str(tmp_path / 'out'), generate_palette(2), output_format='cityscapes')


def test_val_rejects_weights_that_do_not_fit(trained, tmp_path):
    cfg, _, _ = trained
    bad = tmp_path / 'bad.pdparams'
    paddle.save({'stem.0.weight': np.zeros((1, 1), np.float32)}, str(bad))
    from zoo.utils.errors import CheckpointError
    with pytest.raises(CheckpointError, match='do not match|shape mismatch'):
        load_tool('val').main(['--config', cfg, '--model_path', str(bad), '--device', 'cpu'])


def test_tools_missing_model_path_one_line(tmp_path, capsys):
    cfg = tmp_path / 'c.yml'
    cfg.write_text(yaml.safe_dump({'model': {'type': 'TinySegNet'}, 'val_dataset': {'type': 'Dataset'}}))
    missing = str(tmp_path / 'no_such' / 'model.pdparams')
    want = f'error: --model_path {missing!r} does not exist (expected a model.pdparams file)'
    # val.py as a user runs it (a fresh process) ...
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'val.py'), '--config', str(cfg),
                        '--model_path', missing, '--device', 'cpu'], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert [ln for ln in r.stderr.splitlines() if ln.startswith('error:')] == [want]
    assert 'Traceback' not in r.stderr
    # ... and predict.py's main through the same wrapper, in this process (saves a Paddle start-up)
    from zoo.utils.cli import main_wrapper
    tool = load_tool('predict')
    with pytest.raises(SystemExit) as e:
        main_wrapper(lambda: tool.main(['--config', str(cfg), '--model_path', missing, '--image_path', 'x.png',
                                        '--device', 'cpu']))
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [want]
