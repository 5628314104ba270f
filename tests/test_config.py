"""Config loading: _base_ merge, overrides, and every config error of the foundation issue."""
import subprocess
import sys
import textwrap

import pytest

import zoo
from zoo.builder import validate_config
from zoo.utils.config import Config
from zoo.utils.errors import ConfigError


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.fixture
def cfgdir(tmp_path):
    write(tmp_path / '_base_' / 'data.yml', """
        batch_size: 2
        iters: 100
        train_dataset:
          type: Dataset
          dataset_root: /data
          train_path: train.txt
          num_classes: 3
          transforms:
            - type: Normalize
          mode: train
        optimizer: {type: SGD, momentum: 0.9, weight_decay: 4.0e-5}
        lr_scheduler: {type: PolynomialDecay, learning_rate: 0.01, end_lr: 0.0, power: 0.9}
        loss:
          types: [{type: CrossEntropyLoss}]
          coef: [1]
        model:
          type: FastSCNN
          num_classes: 3
          align_corners: false
        """)
    write(tmp_path / '_base_' / 'sched.yml', """
        iters: 200
        lr_scheduler: {learning_rate: 0.05}
        """)
    return tmp_path


def test_base_list_merge_order_and_lists_replaced(cfgdir):
    path = write(cfgdir / 'm' / 'child.yml', """
        _base_: [../_base_/data.yml, ../_base_/sched.yml]
        batch_size: 8
        loss:
          coef: [1, 0.4]
        """)
    cfg = Config(path)
    assert cfg.batch_size == 8
    assert cfg.iters == 200                                   # second base overrides first
    assert cfg.dic['lr_scheduler'] == {'type': 'PolynomialDecay', 'learning_rate': 0.05, 'end_lr': 0.0,
                                       'power': 0.9}             # dicts merge recursively
    assert cfg.dic['loss']['coef'] == [1, 0.4]                 # lists are replaced
    assert cfg.dic['loss']['types'] == [{'type': 'CrossEntropyLoss'}]


def test_base_as_string_relative_to_file(cfgdir):
    path = write(cfgdir / 'a' / 'b' / 'c.yml', '_base_: ../../_base_/data.yml\n')
    assert Config(path).iters == 100


def test_inherited_false_replaces_the_dict(cfgdir):
    path = write(cfgdir / 'x.yml', """
        _base_: _base_/data.yml
        optimizer:
          _inherited_: false
          type: AdamW
          weight_decay: 0.01
        """)
    cfg = Config(path)
    assert cfg.dic['optimizer'] == {'type': 'AdamW', 'weight_decay': 0.01}


def test_opts_are_typed_and_shortcuts_apply(cfgdir):
    path = write(cfgdir / 'x.yml', '_base_: _base_/data.yml\n')
    cfg = Config(path, opts=['model.align_corners=true', 'optimizer.momentum=0.95',
                             'train_dataset.transforms.0.mean=[1, 2, 3]', 'train.log_iters=5'],
                 learning_rate=0.3, batch_size=16, iters=7)
    assert cfg.dic['model']['align_corners'] is True
    assert cfg.dic['optimizer']['momentum'] == 0.95
    assert cfg.dic['train_dataset']['transforms'][0]['mean'] == [1, 2, 3]
    assert cfg.dic['train']['log_iters'] == 5
    assert cfg.dic['lr_scheduler']['learning_rate'] == 0.3
    assert cfg.batch_size == 16 and cfg.iters == 7


def _err(path, **kw):
    with pytest.raises(ConfigError) as e:
        validate_config(Config(path, **kw))
    msg = str(e.value)
    assert '\n' not in msg
    return msg


def test_unknown_top_level_key_names_file_and_suggests(cfgdir):
    path = write(cfgdir / 'x.yml', '_base_: _base_/data.yml\nbatchsize: 4\n')
    msg = _err(path)
    assert 'x.yml' in msg and 'batchsize' in msg and "did you mean 'batch_size'" in msg


def test_unknown_component_type_suggests_closest(cfgdir):
    path = write(cfgdir / 'x.yml', '_base_: _base_/data.yml\nmodel: {type: FastSCN}\n')
    msg = _err(path)
    assert 'x.yml' in msg and 'model.type' in msg and "'FastSCNN'" in msg


def test_unknown_parameter_of_component(cfgdir):
    path = write(cfgdir / 'x.yml', '_base_: _base_/data.yml\nmodel: {align_corner: true}\n')
    msg = _err(path)
    assert 'model.align_corner' in msg and "did you mean 'align_corners'" in msg


def test_wrong_value_type(cfgdir):
    path = write(cfgdir / 'x.yml', '_base_: _base_/data.yml\nbatch_size: two\n')
    msg = _err(path)
    assert 'batch_size' in msg and 'integer' in msg
    path = write(cfgdir / 'y.yml', '_base_: _base_/data.yml\nmodel: {align_corners: maybe}\n')
    msg = _err(path)
    assert 'model.align_corners' in msg and 'true/false' in msg
    path = write(cfgdir / 'z.yml', '_base_: _base_/data.yml\noptimizer: {momentum: fast}\n')
    assert 'optimizer.momentum' in _err(path)


def test_error_names_the_base_file_that_set_the_key(cfgdir):
    write(cfgdir / '_base_' / 'bad.yml', 'model: {type: FastSCNN, widht: 3}\n')
    path = write(cfgdir / 'x.yml', '_base_: [_base_/data.yml, _base_/bad.yml]\n')
    msg = _err(path)
    assert 'bad.yml' in msg and 'model.widht' in msg


def test_missing_required_key(cfgdir):
    path = write(cfgdir / 'x.yml', """
        _base_: _base_/data.yml
        train_dataset:
          _inherited_: false
          type: Dataset
          transforms: []
        """)
    msg = _err(path)
    assert "missing required key 'dataset_root'" in msg and 'train_dataset' in msg
    path = write(cfgdir / 'y.yml', """
        _base_: _base_/data.yml
        lr_scheduler: {_inherited_: false, type: PolynomialDecay}
        """)
    assert 'lr_scheduler.learning_rate' in _err(path)


def test_missing_base_file(cfgdir):
    path = write(cfgdir / 'x.yml', '_base_: _base_/nope.yml\n')
    with pytest.raises(ConfigError) as e:
        Config(path)
    assert 'x.yml' in str(e.value) and 'nope.yml' in str(e.value) and 'does not exist' in str(e.value)


def test_missing_config_and_bad_yaml_and_bad_opts(cfgdir):
    with pytest.raises(ConfigError, match='does not exist'):
        Config(str(cfgdir / 'none.yml'))
    path = write(cfgdir / 'bad.yml', 'model: [1, 2\n')
    with pytest.raises(ConfigError, match='not valid YAML'):
        Config(path)
    path = write(cfgdir / 'ok.yml', '_base_: _base_/data.yml\n')
    with pytest.raises(ConfigError, match='key.subkey=value'):
        Config(path, opts=['model.num_classes'])


def test_loss_coef_count_must_match(cfgdir):
    path = write(cfgdir / 'x.yml', """
        _base_: _base_/data.yml
        loss: {types: [{type: CrossEntropyLoss}, {type: CrossEntropyLoss}], coef: [1, 0.4, 0.4]}
        """)
    assert 'loss.coef' in _err(path)


def test_build_model_api_from_path_and_dict(cfgdir):
    path = write(cfgdir / 'x.yml', '_base_: _base_/data.yml\n')
    model = zoo.build_model(path)
    assert type(model).__name__ == 'FastSCNN'
    model2 = zoo.build_model({'model': {'type': 'FastSCNN', 'num_classes': 3}})
    assert model2.state_dict().keys() == model.state_dict().keys()


def test_cli_reports_config_error_in_one_line(cfgdir):
    path = write(cfgdir / 'x.yml', '_base_: _base_/data.yml\nmodel: {type: FastSCN}\n')
    r = subprocess.run([sys.executable, 'tools/train.py', '--config', path], capture_output=True, text=True)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith('error:') and 'FastSCN' in lines[-1], r.stderr
    assert 'Traceback' not in r.stderr
