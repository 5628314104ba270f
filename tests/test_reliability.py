"""What a hostile or careless user can do to the tools, and what they must get back.

The matrix runs every case through the tool's own ``main`` under ``main_wrapper`` (in-process:
fast; a few cases also as a real process) and asserts: the exit code; that stderr is exactly one
line ``error: ...`` naming the file or key; that no traceback is printed; and that nothing was
written where nothing should be (no ``iter_N``, no ``best_model``, no output file). Hostile
files carry a payload that would create a marker file: it must never appear.

After the matrix: a diverging run leaves only finite checkpoints; a kill during a save or a
prune leaves every remaining ``iter_N`` loadable; two runs on one save_dir (the second refuses,
the first finishes intact); SIGTERM exits 143 with one line and no worker left; a SIGKILLed
trainer leaves no orphaned DataLoader worker.
"""
import copy
import dataclasses
import errno
import glob
import importlib.util
import json
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import cv2
import numpy as np
import paddle
import pytest
import yaml

from zoo.engine.trainer import Trainer
from zoo.utils.checkpoint import load_file, nonfinite_keys
from zoo.utils.cli import main_wrapper
from zoo.utils.config import Config

from _tiny import make_tiny_dataset, tiny_config

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# -- running a tool -------------------------------------------------------------------------

def _tool_main(tool):
    path = os.path.join(ROOT, 'tools', tool)
    spec = importlib.util.spec_from_file_location('_tool_' + tool.replace('/', '_')[:-3], path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def run_inprocess(tool, argv, capfd):
    """(exit code, stdout, stderr) of ``main_wrapper(tool.main)``; any other exception escapes
    (and fails the test: that is a traceback the user would see)."""
    main = _tool_main(tool)
    capfd.readouterr()
    try:
        main_wrapper(lambda: main([str(a) for a in argv]))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capfd.readouterr()
    return code, out, err


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ('CUDA_VISIBLE_DEVICES', 'ZOO_DEBUG')}
    env['PYTHONUNBUFFERED'] = '1'
    return env


def run_process(tool, argv, env=None, timeout=300, **popen):
    """The tool as its own process (``tests/_run_tool.py`` registers the tiny test model)."""
    cmd = [sys.executable, os.path.join(HERE, '_run_tool.py'), os.path.join(ROOT, 'tools', tool)]
    return subprocess.run(cmd + [str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                          env={**_env(), **(env or {})}, **popen)


def assert_one_line_error(code, out, err, expect, exit_code=2):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert 'Traceback' not in out + err, out[-3000:] + err[-3000:]
    assert code == exit_code, (code, out[-2000:], err[-2000:])
    assert len(lines) == 1 and lines[0].startswith('error: '), err[-3000:]
    for s in expect:
        assert s in lines[0], (s, lines[0])
    return lines[0]


# -- shared inputs --------------------------------------------------------------------------

@pytest.fixture(scope='module')
def base(tmp_path_factory):
    """A tiny dataset, its config and a good 3-iteration checkpoint."""
    root = tmp_path_factory.mktemp('reliability')
    data = make_tiny_dataset(str(root / 'data'), n=8)
    cfg = tiny_config(data, iters=3)
    good = str(root / 'good')
    Trainer(Config(copy.deepcopy(cfg)), save_dir=good, save_interval=3).train()
    return {'root': root, 'data': data, 'cfg_dict': cfg, 'good': os.path.join(good, 'iter_3')}


class Ctx:
    """Paths of one case; ``fmt`` fills ``{placeholders}`` in argv templates."""

    def __init__(self, base, tmp):
        self.base, self.tmp = base, tmp
        self.vals = {'out': str(tmp / 'out'), 'data': base['data'], 'marker': str(tmp / 'pwned'),
                     'good': base['good'], 'weights': os.path.join(base['good'], 'model.pdparams'),
                     'img': os.path.join(base['data'], 'img', '0.png'), 'tmp': str(tmp)}
        self.vals['cfg'] = self.config()

    def config(self, name='tiny.yml', **changes):
        cfg = copy.deepcopy(self.base['cfg_dict'])
        for dotted, value in changes.items():
            node = cfg
            *parents, last = dotted.split('__')
            for p in parents:
                node = node.setdefault(p, {})
            if value is _DELETE:
                node.pop(last, None)
            else:
                node[last] = value
        path = self.tmp / name
        path.write_text(yaml.safe_dump(cfg))
        return str(path)

    def checkpoint(self, name='ckpt'):
        dst = self.tmp / name
        shutil.copytree(self.base['good'], dst)
        return str(dst)

    def fmt(self, argv):
        return [a.format(**self.vals) if isinstance(a, str) else a for a in argv]


_DELETE = object()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def _hostile(path, marker, inside=None):
    """Overwrite ``path`` with a pickle that runs ``touch marker`` (inside a plausible dict)."""
    obj = _Payload(marker) if inside is None else {**inside, 'evil': _Payload(marker)}
    with open(path, 'wb') as f:
        pickle.dump(obj, f, protocol=4)


def _poison(path, key_pred=lambda k: True, value=np.nan):
    sd = load_file(path, return_numpy=True)
    for k, v in sd.items():
        if isinstance(v, np.ndarray) and np.issubdtype(v.dtype, np.floating) and key_pred(k):
            v.reshape(-1)[0] = value
            break
    paddle.save({k: paddle.to_tensor(v) if isinstance(v, np.ndarray) else v for k, v in sd.items()}, path)


# -- setups: each returns extra placeholders -------------------------------------------------

def cfg(**changes):
    return lambda c: {'cfg': c.config(**changes)}


def ckpt_hostile(name):
    def setup(c):
        d = c.checkpoint()
        _hostile(os.path.join(d, name), c.vals['marker'])
        return {'ckpt': d}
    return setup


def ckpt_poisoned(name, value=np.nan):
    def setup(c):
        d = c.checkpoint()
        _poison(os.path.join(d, name), value=value)
        return {'ckpt': d, 'weights': os.path.join(d, 'model.pdparams')}
    return setup


def ckpt_bytes(name, cut):
    def setup(c):
        d = c.checkpoint()
        p = os.path.join(d, name)
        data = open(p, 'rb').read()
        open(p, 'wb').write(data[:cut(len(data))])
        return {'ckpt': d, 'weights': os.path.join(d, 'model.pdparams')}
    return setup


def ckpt_state(state):
    def setup(c):
        d = c.checkpoint()
        paddle.save(state, os.path.join(d, 'train_state.pdstates'))
        return {'ckpt': d}
    return setup


def weights_hostile(c):
    p = str(c.tmp / 'model.pdparams')
    _hostile(p, c.vals['marker'], inside={'stem.0.weight': np.zeros(3, 'float32')})
    return {'weights': p}


def weights_nan(c):
    p = str(c.tmp / 'model.pdparams')
    shutil.copy(c.vals['weights'], p)
    _poison(p, value=np.inf)
    return {'weights': p}


def lock_held_by(host=None):
    def setup(c):
        out = c.vals['out']
        os.makedirs(out)
        pid = os.getppid() if host is None else 12345
        start = None
        if host is None:
            from zoo.utils.lock import _process_start
            start = _process_start(pid)
        json.dump({'host': host or socket.gethostname(), 'pid': pid, 'start': start, 'since': 'earlier'},
                  open(os.path.join(out, '.lock'), 'w'))
        return {}
    return setup


def file_in_the_way(c):
    p = c.tmp / 'a_file'
    p.write_text('x')
    return {'blocked': str(p / 'demo')}


def empty_cityscapes(c):
    for d in ('leftImg8bit/train', 'gtFine/train'):
        os.makedirs(c.tmp / 'cs' / d)
    return {'cs': str(c.tmp / 'cs')}


def bad_sample(kind, split='train'):
    """A copy of the tiny dataset with one broken sample (the pre-flight check's job)."""
    def setup(c):
        data = str(c.tmp / 'data')
        shutil.copytree(c.base['data'], data)
        img, lab = os.path.join(data, 'img', '3.png'), os.path.join(data, 'lab', '3.png')
        if kind == 'truncated_jpeg':
            jpg = os.path.join(data, 'img', '3.jpg')
            ok, buf = cv2.imencode('.jpg', cv2.imread(img))
            open(jpg, 'wb').write(buf.tobytes()[:len(buf) // 2])
            lines = open(os.path.join(data, 'list.txt')).read().replace('img/3.png', 'img/3.jpg')
            open(os.path.join(data, 'list.txt'), 'w').write(lines)
        elif kind == 'empty_image':
            open(img, 'wb').close()
        elif kind == 'label_out_of_range':
            lab_arr = cv2.imread(lab, cv2.IMREAD_UNCHANGED)
            lab_arr[0, 0] = 7
            cv2.imwrite(lab, lab_arr)
        elif kind == 'rgb_label':
            cv2.imwrite(lab, cv2.cvtColor(cv2.imread(lab, cv2.IMREAD_UNCHANGED), cv2.COLOR_GRAY2BGR))
        elif kind == '16bit_label':
            cv2.imwrite(lab, cv2.imread(lab, cv2.IMREAD_UNCHANGED).astype('uint16') * 300)
        elif kind == 'size_mismatch':
            cv2.imwrite(lab, np.zeros((20, 30), 'uint8'))
        changes = {f'{d}__dataset_root': data for d in ('train_dataset', 'val_dataset')}
        if split == 'val':  # only the val list names the broken sample
            open(os.path.join(data, 'train.txt'), 'w').write(
                ''.join(ln for ln in open(os.path.join(data, 'list.txt')) if '/3.' not in ln))
            changes['train_dataset__train_path'] = 'train.txt'
        return {'cfg': c.config(**changes)}
    return setup


def convert_config(c):
    from test_convert_weights import TINY_MODEL
    p = c.tmp / 'deeplab.yml'
    p.write_text(yaml.safe_dump({'model': TINY_MODEL}))
    os.makedirs(c.tmp / 'outdir')
    return {'dl_cfg': str(p), 'outdir': str(c.tmp / 'outdir')}


def both(*setups):
    def setup(c):
        vals = {}
        for s in setups:
            r = s(c)
            c.vals.update(r)
            vals.update(r)
        return vals
    return setup


# -- the matrix -----------------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    id: str
    tool: str
    argv: list
    expect: list
    setup: object = None
    nothing_in: tuple = ('{out}',)   # folders that must hold no checkpoint / output afterwards
    marker: bool = False            # a hostile payload is involved: its marker must not appear
    mark: object = None
    code: int = 2


TRAIN = ['--config', '{cfg}', '--save_dir', '{out}', '--save_interval', '1']
RESUME = TRAIN + ['--resume_model', '{ckpt}', '--iters', '6']
VAL = ['--config', '{cfg}', '--model_path', '{weights}']
PREDICT = VAL + ['--image_path', '{img}', '--save_dir', '{out}']
EXPORT = VAL + ['--save_dir', '{out}']
CONVERT = ['--from', 'paddleseg', '--config', '{dl_cfg}']

CASES = [
    # config mistakes: found before anything is built, whether or not --do_eval is given
    Case('unknown_top_level_key', 'train.py', TRAIN, ['batch_sise', "did you mean 'batch_size'"],
         cfg(batch_sise=2)),
    Case('test_config_typo_without_do_eval', 'train.py', TRAIN, ['test_config.is_slid', "'is_slide'"],
         cfg(test_config={'is_slid': True})),
    Case('test_config_slide_without_crop_size', 'train.py', TRAIN, ['test_config.crop_size'],
         cfg(test_config={'is_slide': True})),
    Case('export_block_typo', 'train.py', TRAIN, ['export.input_shap', "'input_shape'"],
         cfg(export={'input_shap': [1, 3, 32, 32]})),
    Case('export_input_shape_value', 'train.py', TRAIN, ['export.input_shape', 'four integers'],
         cfg(export={'input_shape': [1, 4, 32, 32]})),
    Case('export_transform_typo', 'train.py', TRAIN, ['export.transforms.0', 'meen'],
         cfg(export={'transforms': [{'type': 'Normalize', 'meen': [0, 0, 0]}]})),
    Case('val_transform_typo_without_do_eval', 'train.py', TRAIN, ['val_dataset.transforms.0', 'meen'],
         cfg(val_dataset__transforms=[{'type': 'Normalize', 'meen': [0, 0, 0]}])),
    Case('val_transform_bad_value_without_do_eval', 'train.py', TRAIN,
         ['val_dataset.transforms.0', 'Normalize.std'],
         cfg(val_dataset__transforms=[{'type': 'Normalize', 'std': [0, 0, 0]}])),
    Case('train_option_in_config_zero', 'train.py', TRAIN[:-2], ['train.save_interval', 'positive'],
         cfg(train={'save_interval': 0})),
    Case('train_option_typo', 'train.py', TRAIN, ['train.save_intervall', "'save_interval'"],
         cfg(train={'save_intervall': 3})),
    Case('model_value_a_layer_refuses', 'train.py', TRAIN, ['model', 'TinySegNet cannot be built from these values'],
         cfg(model={'type': 'TinySegNet', 'width': -1})),
    Case('unknown_model_type', 'train.py', TRAIN, ['model.type', 'TinySegNett'], cfg(model={'type': 'TinySegNett'})),
    Case('missing_config_file', 'train.py', ['--config', '{tmp}/nope.yml', '--save_dir', '{out}'],
         ['nope.yml', 'does not exist']),
    Case('invalid_yaml', 'train.py', ['--config', '{bad_yaml}', '--save_dir', '{out}'], ['bad.yml', 'not valid YAML'],
         lambda c: {'bad_yaml': str((c.tmp / 'bad.yml').write_text('a: [1, 2') and c.tmp / 'bad.yml')}),
    Case('missing_base', 'train.py', ['--config', '{based}', '--save_dir', '{out}'], ['_base_', 'missing.yml'],
         lambda c: {'based': str((c.tmp / 'b.yml').write_text('_base_: missing.yml\n') and c.tmp / 'b.yml')}),
    Case('malformed_opts', 'train.py', TRAIN + ['--opts', 'iters'], ['--opts', "'iters'"]),
    Case('opts_type_error', 'train.py', TRAIN + ['--opts', 'batch_size=two'], ['batch_size', 'integer']),
    Case('train_data_missing', 'train.py', TRAIN, ['dataset_root', 'nowhere'],
         cfg(train_dataset__dataset_root='/nowhere/at/all')),
    # command-line options: refused, never silently replaced
    Case('save_interval_zero', 'train.py', TRAIN[:-1] + ['0'], ['--save_interval', '>= 1']),
    Case('log_iters_zero', 'train.py', TRAIN + ['--log_iters', '0'], ['--log_iters', '>= 1']),
    Case('keep_checkpoint_max_zero', 'train.py', TRAIN + ['--keep_checkpoint_max', '0'], ['--keep_checkpoint_max']),
    Case('eval_interval_zero', 'train.py', TRAIN + ['--eval_interval', '0'], ['--eval_interval']),
    Case('num_workers_negative', 'train.py', TRAIN + ['--num_workers', '-1'], ['--num_workers', '>= 0']),
    Case('seed_negative', 'train.py', TRAIN + ['--seed', '-1'], ['--seed', '>= 0']),
    Case('learning_rate_negative', 'train.py', TRAIN + ['--learning_rate', '-0.1'],
         ['lr_scheduler.learning_rate', 'positive']),
    Case('iters_zero', 'train.py', TRAIN + ['--iters', '0'], ['iters', 'positive']),
    Case('batch_larger_than_dataset', 'train.py', TRAIN + ['--batch_size', '64'],
         ['batch_size', 'larger than the training set', '8 samples']),
    Case('device_gpu_on_cpu_build', 'train.py', TRAIN + ['--device', 'gpu'], ['--device gpu', 'CUDA'],
         mark=pytest.mark.skipif(paddle.device.is_compiled_with_cuda(), reason='a CUDA build')),
    # resuming: the checkpoint is read safely, must be finite and complete, and leave work to do
    Case('resume_missing_folder', 'train.py', TRAIN + ['--resume_model', '{tmp}/iter_9'],
         ['iter_9', 'not a checkpoint folder']),
    Case('resume_hostile_train_state', 'train.py', RESUME, ['train_state.pdstates', 'refused', 'posix.system'],
         ckpt_hostile('train_state.pdstates'), marker=True),
    Case('resume_hostile_model', 'train.py', RESUME, ['ckpt/model.pdparams', 'refused'],
         ckpt_hostile('model.pdparams'), marker=True),
    Case('resume_hostile_optimizer', 'train.py', RESUME, ['model.pdopt', 'refused'],
         ckpt_hostile('model.pdopt'), marker=True),
    Case('resume_train_state_without_iteration', 'train.py', RESUME, ['train_state.pdstates', '"iteration"'],
         ckpt_state({'best_miou': 0.1})),
    Case('resume_train_state_bad_iteration', 'train.py', RESUME, ['train_state.pdstates', '"iteration"'],
         ckpt_state({'iteration': 'three'})),
    Case('resume_nan_weights', 'train.py', RESUME, ['model.pdparams', 'NaN/inf'], ckpt_poisoned('model.pdparams')),
    Case('resume_inf_optimizer_state', 'train.py', RESUME, ['model.pdopt', 'NaN/inf'],
         ckpt_poisoned('model.pdopt', np.inf)),
    Case('resume_past_iters', 'train.py', RESUME + ['--iters', '2'], ['iteration 3', 'iters=2', 'nothing left'],
         lambda c: {'ckpt': c.checkpoint()}),
    Case('resume_truncated_weights', 'train.py', RESUME, ['model.pdparams', 'corrupt'],
         ckpt_bytes('model.pdparams', lambda n: n // 2)),
    Case('resume_empty_optimizer', 'train.py', RESUME, ['model.pdopt', 'empty'], ckpt_bytes('model.pdopt', lambda n: 0)),
    Case('resume_other_model_width', 'train.py', RESUME, ['shape mismatch', 'stem.0.weight'],
         both(lambda c: {'ckpt': c.checkpoint()}, cfg(model={'type': 'TinySegNet', 'width': 4}))),
    # val / predict / export: the weights file is read safely and must be finite
    Case('val_hostile_weights', 'val.py', VAL, ['model.pdparams', 'refused'], weights_hostile, marker=True),
    Case('val_nan_weights', 'val.py', VAL, ['model.pdparams', 'NaN/inf'], weights_nan),
    Case('val_missing_weights', 'val.py', VAL[:-1] + ['{tmp}/none.pdparams'], ['none.pdparams', 'does not exist']),
    Case('val_truncated_weights', 'val.py', VAL, ['model.pdparams', 'corrupt'],
         ckpt_bytes('model.pdparams', lambda n: n - 7)),
    Case('val_weights_of_another_model', 'val.py', VAL, ['keys do not match', 'missing'],
         lambda c: {'weights': (paddle.save({'w': paddle.ones([2])}, str(c.tmp / 'o.pdparams'))
                                or str(c.tmp / 'o.pdparams'))}),
    Case('val_test_config_typo', 'val.py', VAL, ['test_config.is_slid'], cfg(test_config={'is_slid': True})),
    Case('predict_http_url', 'predict.py', VAL[:-1] + ['http://127.0.0.1:9/model.pdparams', '--image_path', '{img}',
                                                        '--save_dir', '{out}'], ['plain http', 'https']),
    Case('predict_ftp_url', 'predict.py', VAL[:-1] + ['ftp://127.0.0.1:9/model.pdparams', '--image_path', '{img}',
                                                       '--save_dir', '{out}'], ['only https']),
    Case('predict_hostile_weights', 'predict.py', PREDICT, ['model.pdparams', 'refused'], weights_hostile,
         marker=True),
    Case('predict_nan_weights', 'predict.py', PREDICT, ['model.pdparams', 'NaN/inf'], weights_nan),
    Case('predict_missing_image', 'predict.py', VAL + ['--image_path', '{tmp}/no.png', '--save_dir', '{out}'],
         ['--image_path', 'no.png']),
    Case('export_hostile_weights', 'export.py', EXPORT, ['model.pdparams', 'refused'], weights_hostile, marker=True),
    Case('export_nan_weights', 'export.py', EXPORT, ['model.pdparams', 'NaN/inf'], weights_nan),
    Case('export_block_typo_at_export', 'export.py', EXPORT + ['--opts', 'export.input_shap=[1,3,32,32]'],
         ['export.input_shap']),
    Case('export_save_dir_is_a_file', 'export.py', EXPORT, ['export folder', 'is a file'],
         lambda c: {'out': str((c.tmp / 'out').write_text('x') and c.tmp / 'out')}, nothing_in=()),
    # convert_weights.py
    Case('convert_output_is_a_folder', 'convert_weights.py', CONVERT + ['--input', '{weights}', '--output', '{outdir}'],
         ['--output', 'is a folder'], convert_config, nothing_in=('{outdir}',)),
    Case('convert_hostile_input', 'convert_weights.py',
         CONVERT + ['--input', '{weights}', '--output', '{out}/w.pdparams'], ['model.pdparams', 'refused'],
         both(convert_config, weights_hostile), marker=True),
    Case('convert_nan_input', 'convert_weights.py',
         CONVERT + ['--input', '{weights}', '--output', '{out}/w.pdparams'], ['model.pdparams', 'NaN/inf'],
         both(convert_config, weights_nan)),
    # other tools
    Case('demo_data_unwritable_root', 'make_demo_data.py', ['--root', '{blocked}', '--num_train', '1', '--num_val', '1'],
         ['Not a directory', 'a_file/demo'], file_in_the_way),
    Case('loader_benchmark_empty_root', 'data/benchmark_loader.py', ['--dataset_root', '{cs}', '--num', '1'],
         ['no *_leftImg8bit.png', 'cs'], empty_cityscapes),
    Case('loader_benchmark_missing_root', 'data/benchmark_loader.py', ['--dataset_root', '{tmp}/nope', '--num', '1'],
         ['nope', 'does not exist']),
    # the save_dir lock
    Case('save_dir_is_a_file', 'train.py', TRAIN, ['--save_dir', 'is a file'],
         lambda c: {'out': str((c.tmp / 'out').write_text('x') and c.tmp / 'out')}, nothing_in=()),
    Case('save_dir_in_use', 'train.py', TRAIN, ['--save_dir', 'in use by another run'], lock_held_by()),
    Case('save_dir_locked_elsewhere', 'train.py', TRAIN, ['another machine', '.lock'], lock_held_by('elsewhere')),
    # data problems: found by the pre-flight scan (zoo/datasets/scan.py) before the first iteration
    Case('data_truncated_jpeg', 'train.py', TRAIN, ['3.jpg'], bad_sample('truncated_jpeg')),
    Case('data_empty_image', 'train.py', TRAIN, ['img/3.png'], bad_sample('empty_image')),
    Case('data_label_out_of_range', 'train.py', TRAIN, ['lab/3.png', '7'], bad_sample('label_out_of_range')),
    Case('data_rgb_label', 'train.py', TRAIN, ['lab/3.png'], bad_sample('rgb_label')),
    Case('data_16bit_label', 'train.py', TRAIN, ['lab/3.png'], bad_sample('16bit_label')),
    Case('data_size_mismatch', 'train.py', TRAIN, ['lab/3.png'], bad_sample('size_mismatch')),
    Case('data_bad_val_sample_without_do_eval', 'train.py', TRAIN, ['lab/3.png'],
         bad_sample('label_out_of_range', split='val')),
]


def _params(cases):
    return [pytest.param(c, id=c.id, marks=[c.mark] if c.mark else []) for c in cases]


RUN_FILES = ('train.log', 'config.yml')  # the run's own log and resolved config (zoo/engine/run_files.py)


def _written(folder):
    """What a failed run left in ``folder``: anything but hidden files and the run's log/config."""
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder) if not f.startswith('.') and f not in RUN_FILES)


@pytest.mark.parametrize('case', _params(CASES))
def test_user_error_is_one_line(case, base, tmp_path, capfd):
    ctx = Ctx(base, tmp_path)
    if case.setup is not None:
        ctx.vals.update(case.setup(ctx))
    code, out, err = run_inprocess(case.tool, ctx.fmt(case.argv), capfd)
    assert_one_line_error(code, out, err, [ctx.fmt([s])[0] for s in case.expect], case.code)
    for folder in ctx.fmt(list(case.nothing_in)):
        assert _written(folder) == [], (folder, _written(folder))
    if case.marker:
        assert not os.path.exists(ctx.vals['marker']), 'the hostile payload ran'



@pytest.mark.parametrize('case_id', ['resume_hostile_train_state', 'predict_http_url', 'device_gpu_on_cpu_build',
                                     'save_dir_in_use'])
def test_user_error_is_one_line_as_a_process(case_id, base, tmp_path):
    """The same, as the user sees it: a process of its own (stderr holds nothing else)."""
    case = next(c for c in CASES if c.id == case_id)
    if case.mark is not None and case.mark.name == 'skipif' and case.mark.args[0]:
        pytest.skip(case.mark.kwargs.get('reason'))
    ctx = Ctx(base, tmp_path)
    if case.setup is not None:
        ctx.vals.update(case.setup(ctx))
    r = run_process(case.tool, ctx.fmt(case.argv))
    assert_one_line_error(r.returncode, r.stdout, r.stderr, [ctx.fmt([s])[0] for s in case.expect])
    assert _written(ctx.vals['out']) == []
    assert not os.path.exists(ctx.vals['marker'])


def test_zoo_debug_shows_the_traceback(base, tmp_path):
    ctx = Ctx(base, tmp_path)
    r = run_process('train.py', ctx.fmt(TRAIN + ['--seed', '-1']), env={'ZOO_DEBUG': '1'})
    assert r.returncode == 2 and 'Traceback' in r.stderr and r.stderr.strip().endswith('>= 0, got -1')


# -- divergence: only finite checkpoints, one line naming the last finite one ------------------

def _checkpoints(save_dir):
    return sorted(glob.glob(os.path.join(save_dir, 'iter_*')), key=lambda p: int(p.rsplit('_', 1)[1]))


def assert_loadable(ckpt, iteration=None):
    """Every file of ``iter_N`` loads through the safe loader and is finite."""
    for name in ('model.pdparams', 'model.pdopt'):
        state = load_file(os.path.join(ckpt, name), return_numpy=True)
        assert state and not nonfinite_keys(state), (ckpt, name)
    state = load_file(os.path.join(ckpt, 'train_state.pdstates'))
    assert state['iteration'] == (iteration if iteration is not None else int(ckpt.rsplit('_', 1)[1]))


@pytest.mark.parametrize('fault,expect,stopped_at', [
    ({'nan_after': 5}, 'loss is nan', 6),                       # NaN logits from the 6th forward pass
    ({'nan_weights_after': 5}, 'stem.1._variance', 6),          # BN statistics NaN, loss still finite
])
def test_a_diverging_run_leaves_only_finite_checkpoints(base, tmp_path, capfd, fault, expect, stopped_at):
    ctx = Ctx(base, tmp_path)
    cfg_path = ctx.config(model={'type': 'TinySegNet', **fault}, iters=10)
    code, out, err = run_inprocess('train.py', ['--config', cfg_path, '--save_dir', ctx.vals['out'],
                                                '--save_interval', '2'], capfd)
    line = assert_one_line_error(code, out, err, [expect, f'at iteration {stopped_at}', 'nothing saved',
                                                  f'the last finite checkpoint is {ctx.vals["out"]}/iter_4'])
    assert [os.path.basename(p) for p in _checkpoints(ctx.vals['out'])] == ['iter_2', 'iter_4'], line
    for p in _checkpoints(ctx.vals['out']):
        assert_loadable(p)


def test_the_demo_model_at_learning_rate_1000_stops_before_writing_nan(demo_root, tmp_path, capfd):
    """Issue 13's case: Fast-SCNN's loss stays finite at lr 1000 while its weights turn NaN/inf
    (the unguarded trainer wrote iter_16 and iter_24 with 221 of 236 tensors non-finite, exit 0)."""
    out = str(tmp_path / 'out')
    code, stdout, err = run_inprocess('train.py', [
        '--config', os.path.join(ROOT, 'configs', 'demo', 'fast_scnn_demo_96x192_1k.yml'), '--save_dir', out,
        '--opts', f'train_dataset.dataset_root={demo_root}', f'val_dataset.dataset_root={demo_root}',
        'lr_scheduler.warmup_iters=0', '--iters', '12', '--batch_size', '2', '--learning_rate', '1000',
        '--save_interval', '2', '--log_iters', '4'], capfd)
    line = assert_one_line_error(code, stdout, err, ['at iteration', 'training stopped, nothing saved'])
    stopped = int(re.search(r'at iteration (\d+)', line).group(1))
    # every save before the divergence was kept, and each is finite
    assert [os.path.basename(p) for p in _checkpoints(out)] == [f'iter_{i}' for i in range(2, stopped, 2)], line
    for p in _checkpoints(out):
        assert_loadable(p)


# -- kills in the middle of a save or a prune ---------------------------------------------------

def _wait_for(path, proc, timeout=300):
    t0 = time.time()
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, f'{path} never appeared'
        time.sleep(0.2)


def _start(ctx, argv, env):
    cmd = [sys.executable, os.path.join(HERE, '_run_tool.py'), os.path.join(ROOT, 'tools', 'train.py')]
    return subprocess.Popen(cmd + [str(a) for a in argv], env={**_env(), **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize('where', ['save', 'prune'])
def test_a_kill_during_save_or_prune_leaves_every_checkpoint_loadable(base, tmp_path, capfd, where):
    ctx = Ctx(base, tmp_path)
    out, marker = ctx.vals['out'], str(tmp_path / 'paused')
    cfg_path = ctx.config(iters=6)
    argv = ['--config', cfg_path, '--save_dir', out, '--save_interval', '2']
    if where == 'save':  # the 5th paddle.save is iter_4's model.pdopt: killed half-written
        env, argv = {'ZOO_TEST_PAUSE_SAVE': f'{marker}:5'}, argv
    else:  # iter_4 written, then iter_2 pruned (keep 1): killed with one file deleted
        env, argv = {'ZOO_TEST_PAUSE_PRUNE': marker}, argv + ['--keep_checkpoint_max', '1']
    proc = _start(ctx, argv, env)
    _wait_for(marker, proc)
    proc.kill()
    proc.communicate()
    visible = [os.path.basename(p) for p in _checkpoints(out)]
    assert visible == (['iter_2'] if where == 'save' else ['iter_4']), os.listdir(out)
    assert any(f.startswith('.') and f.endswith(('.tmp', '.trash')) for f in os.listdir(out))
    for p in _checkpoints(out):
        assert_loadable(p)
    # the next run resumes from the newest checkpoint and clears what the killed run left
    code, stdout, err = run_inprocess('train.py', argv[:4] + ['--resume_model', os.path.join(out, visible[-1])], capfd)
    assert code == 0, err
    assert [f for f in os.listdir(out) if f.startswith('.')] == []
    assert_loadable(os.path.join(out, 'iter_6'))


# -- two runs, one save_dir -----------------------------------------------------------------------

def test_a_second_run_on_the_same_save_dir_refuses_and_the_first_finishes_intact(base, tmp_path):
    ctx = Ctx(base, tmp_path)
    out = ctx.vals['out']
    argv = ['--config', ctx.config(iters=8), '--save_dir', out, '--save_interval', '4']
    go = str(tmp_path / 'go')
    first = _start(ctx, argv, {'ZOO_TEST_HOLD': f'{go}:6'})  # waits at step 6, after writing iter_4
    _wait_for(os.path.join(out, 'iter_4'), first)
    second = run_process('train.py', argv + ['--seed', '5'])
    assert_one_line_error(second.returncode, second.stdout, second.stderr, ['--save_dir', 'in use by another run',
                                                                            f'pid {first.pid}'])
    open(go, 'w').close()
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-3000:]
    assert [os.path.basename(p) for p in _checkpoints(out)] == ['iter_4', 'iter_8']
    for p in _checkpoints(out):
        assert_loadable(p)
    assert load_file(os.path.join(out, 'iter_8', 'train_state.pdstates'))['seed'] == 0  # the first run's
    assert not os.path.exists(os.path.join(out, '.lock'))


# -- signals and DataLoader workers --------------------------------------------------------------

def _children(pid):
    kids = []
    for task in os.listdir(f'/proc/{pid}/task'):
        try:
            kids += [int(x) for x in open(f'/proc/{pid}/task/{task}/children').read().split()]
        except OSError:
            pass
    return kids


def _running(pid):
    try:
        return open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


@pytest.mark.skipif(not os.path.exists('/proc/self/task'), reason='needs Linux /proc')
@pytest.mark.parametrize('sig', ['SIGTERM', 'SIGKILL'])
def test_signals_end_the_run_and_its_workers(base, tmp_path, sig):
    """SIGTERM: one line, exit 143, workers ended. SIGKILL: the workers die with their parent
    (PR_SET_PDEATHSIG; before, they stayed alive as orphans holding the output pipes open)."""
    ctx = Ctx(base, tmp_path)
    argv = ['--config', ctx.config(iters=400), '--save_dir', ctx.vals['out'], '--save_interval', '400',
            '--num_workers', '2']
    proc = _start(ctx, argv, {'ZOO_TEST_STEP_SLEEP': '0.2'})
    t0 = time.time()
    while len(_children(proc.pid)) < 2:
        assert proc.poll() is None and time.time() - t0 < 300, proc.communicate()
        time.sleep(0.2)
    workers = _children(proc.pid)
    time.sleep(1)
    proc.send_signal(getattr(signal, sig))
    try:
        stdout, stderr = proc.communicate(timeout=60)  # hangs while an orphan holds the pipes
    finally:
        for w in workers:
            if _running(w):
                os.kill(w, signal.SIGKILL)
    t0 = time.time()
    while any(_running(w) for w in workers) and time.time() - t0 < 10:
        time.sleep(0.2)
    assert not any(_running(w) for w in workers), 'DataLoader workers outlived the trainer'
    if sig == 'SIGTERM':
        assert_one_line_error(proc.returncode, stdout, stderr, ['terminated'], exit_code=143)
        assert 'C++ Traceback' not in stderr
    else:
        assert proc.returncode == -signal.SIGKILL


def test_a_full_disk_while_saving_is_one_line_and_keeps_the_previous_checkpoint(base, tmp_path, capfd, monkeypatch):
    ctx = Ctx(base, tmp_path)
    out = ctx.vals['out']
    real_save, calls = paddle.save, [0]

    def save(obj, path, *a, **k):
        calls[0] += 1
        if calls[0] == 5:  # iter_4's model.pdopt: half written, then the disk is full
            with open(path, 'wb') as f:
                f.write(b'\x80\x04partial')
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, path, *a, **k)
    monkeypatch.setattr(paddle, 'save', save)
    code, stdout, err = run_inprocess('train.py', ['--config', ctx.config(iters=6), '--save_dir', out,
                                                   '--save_interval', '2'], capfd)
    assert_one_line_error(code, stdout, err, [f'cannot write checkpoint {out}/iter_4: No space left on device',
                                              f'the previous checkpoint {out}/iter_2 is intact'])
    monkeypatch.setattr(paddle, 'save', real_save)
    assert sorted(os.listdir(out)) == ['config.yml', 'iter_2', 'train.log']  # no temporary folder, no lock
    assert_loadable(os.path.join(out, 'iter_2'))
