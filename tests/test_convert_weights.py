"""tools/convert_weights.py: PaddleSeg / mmseg checkpoints -> our names, strict, atomic."""
import os
import sys

import numpy as np
import paddle
import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'tools'))

import convert_weights  # noqa: E402

from zoo.models.backbones.resnet import paddleseg_resnet_vd_key  # noqa: E402
from zoo.utils.cli import main_wrapper  # noqa: E402

TINY_MODEL = {
    'type': 'DeepLabV3', 'num_classes': 3,
    'backbone': {'type': 'ResNet', 'depth': 18, 'deep_stem': True, 'avg_down': True, 'stem_channels': 16,
                 'base_channels': 8, 'output_stride': 8},
    'aspp_ratios': [1, 2, 3], 'aspp_out_channels': 16,
}


def _write_config(tmp_path, **model_overrides):
    path = tmp_path / 'tiny.yml'
    path.write_text(yaml.safe_dump({'model': dict(TINY_MODEL, **model_overrides)}))
    return str(path)


def _build(config):
    import zoo
    return zoo.build_model(config)


def _to_paddleseg_names(model):
    """Our tiny model's tensors laid out as a PaddleSeg 2.8 DeepLabV3 checkpoint."""
    stem = {'stem.0': 'conv1_1._conv', 'stem.3': 'conv1_2._conv', 'stem.6': 'conv1_3._conv',
            'stem.1': 'conv1_1._batch_norm', 'stem.4': 'conv1_2._batch_norm', 'stem.7': 'conv1_3._batch_norm'}
    part = {'conv1': 'conv0._conv', 'bn1': 'conv0._batch_norm', 'conv2': 'conv1._conv', 'bn2': 'conv1._batch_norm',
            'downsample.1': 'short._conv', 'downsample.2': 'short._batch_norm'}
    head = {'decode_head.aspp_modules.': 'head.aspp.aspp_blocks.',
            'decode_head.image_pool.1.': 'head.aspp.global_avg_pool.1.',
            'decode_head.bottleneck.': 'head.aspp.conv_bn_relu.', 'decode_head.conv_seg.': 'head.cls.'}
    out = {}
    for k, v in model.state_dict().items():
        v = v.numpy()
        if k.startswith('backbone.'):
            mod, leaf = k[len('backbone.'):].rsplit('.', 1)
            if mod in stem:
                src = f'{stem[mod]}.{leaf}'
            else:
                layer, idx, rest = mod.split('.', 2)
                src = f'bb_{int(layer[5:]) - 1}_{idx}.{part[rest]}.{leaf}'
            assert 'backbone.' + paddleseg_resnet_vd_key(src) == k
            out['backbone.' + src] = v
            continue
        for a, b in head.items():
            if k.startswith(a):
                src = (b + k[len(a):]).replace('.conv.', '._conv.').replace('.bn.', '._batch_norm.')
        if k == 'decode_head.bottleneck.conv.weight':  # ours: [pool, rates...]; PaddleSeg: [rates..., pool]
            c = v.shape[1] // 4
            v = np.concatenate([v[:, c:], v[:, :c]], axis=1)
        out[src] = v
    return out


def convert_weights_main(argv):
    """The tool's work, returned: what ``main`` prints."""
    from zoo.models.convert import convert_checkpoint
    args = convert_weights.parse_args(argv)
    return convert_checkpoint(convert_weights.build_target(args.config, args.opts), args.input, args.output,
                              args.source, args.ignore)


def _randomize(model):
    rng = np.random.default_rng(0)
    model.set_state_dict({k: rng.uniform(0.5, 1.5, v.shape).astype('float32') for k, v in model.state_dict().items()})


def test_paddleseg_checkpoint_round_trip(tmp_path):
    config = _write_config(tmp_path)
    paddle.seed(0)
    model = _build(config)
    _randomize(model)
    src = tmp_path / 'paddleseg_model.pdparams'
    paddle.save(_to_paddleseg_names(model), str(src))
    out = tmp_path / 'out' / 'converted.pdparams'
    s = convert_weights_main(['--config', config, '--input', str(src), '--output', str(out)])  # --from detected
    assert s['converted_tensors'] == len(model.state_dict()) == s['source_tensors'] and s['source'] == 'paddleseg'
    assert os.listdir(out.parent) == ['converted.pdparams']  # atomic: no temp file left behind
    fresh = _build(config)
    fresh.set_state_dict(paddle.load(str(out)))
    model.eval()
    fresh.eval()
    x = paddle.randn([1, 3, 32, 32])
    np.testing.assert_array_equal(fresh(x)[0].numpy(), model(x)[0].numpy())


def test_model_pretrained_accepts_paddleseg_checkpoint(tmp_path):
    config = _write_config(tmp_path)
    model = _build(config)
    _randomize(model)
    src = tmp_path / 'paddleseg_model.pdparams'
    paddle.save(_to_paddleseg_names(model), str(src))
    other = tmp_path / 'other'
    other.mkdir()
    loaded = _build(_write_config(other, pretrained=str(src)))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k].numpy(), v.numpy(), err_msg=k)


def test_mmseg_torch_names_via_cli(tmp_path, capsys):
    config = _write_config(tmp_path, bottleneck_kernel=3, conv_bias=False, channel_dropout=True,
                           auxiliary_head={'in_index': 2, 'channels': 8, 'num_convs': 1, 'concat_input': False})
    model = _build(config)
    _randomize(model)
    torch_sd = {}
    for k, v in model.state_dict().items():
        k = k.replace('._mean', '.running_mean').replace('._variance', '.running_var')
        torch_sd[k] = v.numpy()
        if k.endswith('.running_var'):
            torch_sd[k[:-len('running_var')] + 'num_batches_tracked'] = np.array(100, 'int64')
    src = tmp_path / 'mmseg.pdparams'
    paddle.save(torch_sd, str(src))
    out = tmp_path / 'converted.pdparams'
    convert_weights.main(['--from', 'mmseg', '--config', config, '--input', str(src), '--output', str(out)])
    n_values = sum(v.size for v in model.state_dict().values())
    assert f'tensors ({n_values:,} values) written to' in capsys.readouterr().out
    loaded = paddle.load(str(out))
    np.testing.assert_array_equal(loaded['auxiliary_head.convs.0.bn._variance'].numpy(),
                                  torch_sd['auxiliary_head.convs.0.bn.running_var'])


def _run_cli(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main_wrapper(lambda: convert_weights.main(argv))
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith('error: ') and '\n' not in err
    return err


def test_unmatched_source_key_fails_loudly(tmp_path, capsys):
    config = _write_config(tmp_path)
    model = _build(config)
    sd = _to_paddleseg_names(model)
    sd['head.aspp.extra_branch._conv.weight'] = np.zeros([1], 'float32')
    src = tmp_path / 'bad.pdparams'
    paddle.save(sd, str(src))
    out = tmp_path / 'never.pdparams'
    err = _run_cli(['--from', 'paddleseg', '--config', config, '--input', str(src), '--output', str(out)], capsys)
    assert 'head.aspp.extra_branch._conv.weight' in err
    assert not out.exists()
    # dropping it on purpose is allowed
    convert_weights.main(['--from', 'paddleseg', '--config', config, '--input', str(src), '--output', str(out),
                          '--ignore', 'head.aspp.extra_branch.'])
    assert out.exists()


def test_wrong_model_for_checkpoint_fails(tmp_path, capsys):
    """A PaddleSeg checkpoint of a model with other ASPP rates does not fit."""
    config = _write_config(tmp_path)
    src = tmp_path / 'src.pdparams'
    paddle.save(_to_paddleseg_names(_build(config)), str(src))
    other = tmp_path / 'other'
    other.mkdir()
    other_config = _write_config(other, aspp_ratios=[1, 2, 3, 4])
    err = _run_cli(['--from', 'paddleseg', '--config', other_config, '--input', str(src),
                    '--output', str(tmp_path / 'x.pdparams')], capsys)
    assert 'head.aspp.conv_bn_relu._conv.weight' in err and '4 ASPP rates' in err


def test_pth_without_torch_gives_install_hint(tmp_path, capsys):
    pytest.importorskip('paddle')
    try:
        import torch  # noqa: F401
        pytest.skip('torch is installed here')
    except ImportError:
        pass
    src = tmp_path / 'ckpt.pth'
    src.write_bytes(b'not really')
    err = _run_cli(['--from', 'mmseg', '--config', _write_config(tmp_path), '--input', str(src),
                    '--output', str(tmp_path / 'x.pdparams')], capsys)
    assert 'install torch' in err and '[convert]' in err


def test_list_prints_the_weights_table(capsys):
    """``--list`` prints the weights table (docs/weights.md carries it: tests/test_weights.py)."""
    from zoo.models.weights import weights_markdown, weights_table
    convert_weights.main(['--list'])
    out = capsys.readouterr().out
    assert out == weights_markdown() and len(out.strip().splitlines()) == len(weights_table()) + 2


def test_table_name_as_input_knows_its_source(tmp_path, monkeypatch):
    """``--input NAME``: the row's URL is fetched (here: served from a local file) and read with
    the row's importer, whatever the keys look like."""
    import zoo.models.weights as zweights
    config = _write_config(tmp_path)
    model = _build(config)
    _randomize(model)
    src = tmp_path / 'published.pdparams'
    paddle.save(_to_paddleseg_names(model), str(src))
    row = zweights.Weights('test_tiny_deeplabv3_paddleseg', 'DeepLabV3', 'paddleseg', 'https://example.org/tiny.pdparams')
    monkeypatch.setitem(zweights._TABLE, row.name, row)
    monkeypatch.setattr('zoo.utils.checkpoint.resolve_path', lambda url, sha256=None: str(src) if url == row.url else url)
    out = tmp_path / 'converted.pdparams'
    s = convert_weights_main(['--config', config, '--input', 'test_tiny_deeplabv3_paddleseg', '--output', str(out)])
    assert s['source'] == 'paddleseg' and s['converted_tensors'] == len(model.state_dict())
    other = tmp_path / 'other'
    other.mkdir()
    loaded = _build(_write_config(other, pretrained=row.name))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k].numpy(), v.numpy(), err_msg=k)
