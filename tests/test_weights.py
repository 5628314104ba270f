"""The weights table (zoo/models/weights.py) and the one door for weights
(zoo.models.convert.load_weights): what ``pretrained:``, ``--model_path`` and
tools/convert_weights.py read."""
import os

import numpy as np
import paddle
import pytest

import zoo
import zoo.models.convert as zconvert
import zoo.models.weights as zweights
from zoo.engine.predictor import load_trained_model
from zoo.models.convert import detect_source, load_weights
from zoo.models.weights import lookup_weights, weights_markdown, weights_table, without_pretrained
from zoo.utils.config import Config
from zoo.utils.errors import CheckpointError
from zoo.utils.registry import BACKBONES, MODELS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_row_is_complete_and_points_at_a_known_model():
    rows = weights_table()
    assert len(rows) >= 50 and len({r.name for r in rows}) == len(rows) and len({r.url for r in rows}) == len(rows)
    for row in rows:
        assert row.model in MODELS or row.model == 'ResNet' or row.model in BACKBONES, row.name
        assert row.source in zconvert.SOURCES and row.url.startswith('https://'), row.name
        assert row.config is None or os.path.isfile(os.path.join(ROOT, row.config)), row.name
        assert row.recipe, row.name
        if row.config:   # a whole-model checkpoint: what its publisher reports
            assert row.metric and 0 < row.miou < 100, row.name
        if row.sha256 is not None:
            assert row.url.endswith(f'-{row.sha256}.pth'), row.name
        assert lookup_weights(row.name) is row and lookup_weights(row.url) is row


def test_configs_point_at_table_rows():
    """Every URL a config ships as ``pretrained`` is a row of the table (so its source and checksum
    are known), and every config-reproducing row names a config of its model type."""
    import glob
    for path in glob.glob(os.path.join(ROOT, 'configs', '*', '*.yml')):
        if '_base_' in path:
            continue
        model = Config(path).dic['model']
        for node in (model, model.get('backbone') or {}):
            url = node.get('pretrained') if isinstance(node, dict) else None
            if url and str(url).startswith('https://'):
                assert lookup_weights(url) is not None, f'{path}: {url} is not in the weights table'
    for row in weights_table():
        if row.config:
            assert Config(os.path.join(ROOT, row.config)).dic['model']['type'] == row.model, row.name


def test_docs_carry_the_table():
    with open(os.path.join(ROOT, 'docs', 'weights.md')) as f:
        assert weights_markdown() in f.read(), 'docs/weights.md: paste the output of tools/convert_weights.py --list'


def test_without_pretrained_strips_model_and_backbone():
    cfg = Config(os.path.join(ROOT, 'configs', 'deeplabv3', 'deeplabv3_r50-d8_cityscapes_512x1024_80k.yml'))
    assert cfg.dic['model']['backbone']['pretrained'].startswith('https://')
    stripped = without_pretrained(cfg)
    assert stripped.dic['model']['backbone']['pretrained'] is None
    assert cfg.dic['model']['backbone']['pretrained'].startswith('https://')  # the original is untouched


def _no_downloads(monkeypatch):
    def refuse(url, *a, **k):
        raise AssertionError(f'download attempted: {url}')
    monkeypatch.setattr('zoo.utils.download.download', refuse)


def _small_deeplabv3_config():
    """The R-50-D8 config (its backbone ``pretrained`` is an ImageNet URL) with an R-18 trunk."""
    cfg = Config(os.path.join(ROOT, 'configs', 'deeplabv3', 'deeplabv3_r50-d8_cityscapes_512x1024_80k.yml'),
                 opts=['model.backbone.depth=18', 'model.aspp_out_channels=16', 'model.auxiliary_head.in_channels=256',
                       'model.auxiliary_head.channels=8'])
    assert cfg.dic['model']['backbone']['pretrained'].startswith('https://')
    return cfg


def test_model_path_never_downloads_the_backbone(tmp_path, monkeypatch):
    """val.py / predict.py (load_trained_model) on a config whose backbone names ImageNet weights
    by URL: the trained weights replace them, so nothing is fetched (this failed offline)."""
    cfg = _small_deeplabv3_config()
    paddle.seed(0)
    trained = zoo.build_model(without_pretrained(cfg))
    path = str(tmp_path / 'model.pdparams')
    paddle.save(trained.state_dict(), path)
    _no_downloads(monkeypatch)
    model = load_trained_model(cfg, path)
    assert not model.training
    for k, v in trained.state_dict().items():
        np.testing.assert_array_equal(model.state_dict()[k].numpy(), v.numpy(), err_msg=k)
    with pytest.raises(CheckpointError, match='does not exist'):
        load_trained_model(cfg, str(tmp_path / 'missing.pdparams'))


def test_model_path_takes_a_table_name(tmp_path, monkeypatch):
    """``--model_path NAME``: the row's file (here served locally) in the row's format (mmseg
    names), converted on the way in; a row of another model is refused by name."""
    cfg = _small_deeplabv3_config()
    paddle.seed(1)
    trained = zoo.build_model(without_pretrained(cfg))
    torch_names = {k.replace('._mean', '.running_mean').replace('._variance', '.running_var'): v.numpy()
                   for k, v in trained.state_dict().items()}
    src = str(tmp_path / 'published.pdparams')
    paddle.save(torch_names, src)
    row = zweights.Weights('test_small_deeplabv3_mmseg', 'DeepLabV3', 'mmseg', 'https://example.org/small.pth')
    monkeypatch.setitem(zweights._TABLE, row.name, row)
    monkeypatch.setattr('zoo.utils.checkpoint.resolve_path', lambda p, sha256=None: src if p == row.url else p)
    _no_downloads(monkeypatch)
    model = load_trained_model(cfg, row.name)
    np.testing.assert_array_equal(model.decode_head.conv_seg.weight.numpy(), trained.decode_head.conv_seg.weight.numpy())
    with pytest.raises(CheckpointError, match='weights for FastSCNN'):
        load_weights(model, 'fast_scnn_cityscapes_512x1024_160k')


def test_source_detection_is_by_key_names():
    with paddle.LazyGuard():
        model = zoo.build_model(without_pretrained(_small_deeplabv3_config()))
    own = {k: np.zeros(v.shape, 'float32') for k, v in model.state_dict().items()}
    assert detect_source(model, own) == 'ours'
    torch_names = {k.replace('._mean', '.running_mean'): v for k, v in own.items()}
    assert detect_source(model, torch_names) == 'mmseg'
    assert detect_source(model, {'head.aspp.conv_bn_relu._conv.weight': 0, 'backbone.conv1_1._conv.weight': 0}) \
        == 'paddleseg'
    from zoo.models.fast_scnn import FastSCNN
    with paddle.LazyGuard():
        other = FastSCNN(num_classes=3)
    with pytest.raises(CheckpointError, match='PyTorch checkpoint but no importer recognises it'):
        detect_source(_NoImporter(), torch_names)
    assert detect_source(other, {k: 0 for k in other.state_dict()}) == 'ours'


class _NoImporter(paddle.nn.Layer):
    """A model class with no registered importer."""


def test_importer_rejects_two_keys_onto_one_parameter():
    from zoo.models.fast_scnn import FastSCNN
    with paddle.LazyGuard():
        model = FastSCNN(num_classes=3)
    sd = {k.replace('._mean', '.running_mean').replace('._variance', '.running_var'): np.zeros(v.shape, 'float32')
          for k, v in model.state_dict().items()}
    key = 'decode_head.convs.0.depthwise_conv.bn.running_mean'
    sd[key[:-len('running_mean')] + '_mean'] = sd[key]   # the same tensor under both spellings
    with pytest.raises(CheckpointError, match='both map onto'):
        zconvert.convert(model, 'mmseg', sd)
