"""What a training run leaves in save_dir (train.log = the console lines, config.yml with the
source of each key, eval/iter_N/, the validation loss in VisualDL), the ETA, progress lines off
a terminal, and the quiet-by-default warnings."""
import io
import logging
import os
import shutil
import subprocess
import sys
import warnings

import pytest
import yaml

from zoo.engine.progress import Progress, StepTimer
from zoo.engine.trainer import Trainer
from zoo.utils import quiet
from zoo.utils.config import Config, dump_with_origins

from _tiny import make_tiny_dataset, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def tiny_root(tmp_path_factory):
    return make_tiny_dataset(str(tmp_path_factory.mktemp('tiny_run')))


class _Console(logging.Handler):
    def __init__(self):
        super().__init__()
        self.setFormatter(logging.getLogger('zoo').handlers[0].formatter)
        self.lines = []

    def emit(self, record):
        self.lines.extend(self.format(record).splitlines())


def test_train_log_config_and_eval_folders(tiny_root, tmp_path):
    from visualdl import LogReader
    console = _Console()
    logging.getLogger('zoo').addHandler(console)
    try:
        Trainer(Config(tiny_config(tiny_root, iters=4)), save_dir=str(tmp_path), do_eval=True, use_vdl=True,
                save_interval=4, eval_interval=2).train()
    finally:
        logging.getLogger('zoo').removeHandler(console)
    with open(tmp_path / 'train.log', encoding='utf-8') as f:
        log = f.read().splitlines()
    assert log == console.lines  # the same lines as the console, nothing else
    assert not any(ch in '\n'.join(log) for ch in '\r\x1b')  # no progress-bar control characters
    assert any('training done: iterations 1-4 in' in ln and '2 evaluation(s)' in ln for ln in log)
    assert sum('mIoU' in ln and '|' in ln for ln in log) == 2  # the summary header, once per evaluation
    # evaluations every 2 iterations although checkpoints come every 4
    assert sorted(os.listdir(tmp_path / 'eval')) == ['iter_2', 'iter_4']
    assert sorted(d for d in os.listdir(tmp_path) if d.startswith('iter_')) == ['iter_4']
    for name in ('metrics.json', 'confusion_matrix.png', 'per_class_iou.png', 'samples.png'):
        assert os.path.isfile(tmp_path / 'eval' / 'iter_4' / name), name
    # config.yml: loads back to the resolved config; every key names its source
    with open(tmp_path / 'config.yml', encoding='utf-8') as f:
        text = f.read()
    cfg = Config(tiny_config(tiny_root, iters=4))
    assert yaml.safe_load(text) == cfg.dic
    assert all('  # ' in ln for ln in text.splitlines()[1:] if ln.strip() and not ln.lstrip().startswith(('-', '- '))
               and ':' in ln and not ln.startswith(' ' * 6))
    # VisualDL: the validation loss next to the metrics
    logs = [f for f in os.listdir(tmp_path) if f.startswith('vdlrecords')]
    reader = LogReader(file_path=str(tmp_path / logs[0]))
    scalars = set(reader.get_tags()['scalar'])
    for tag in ('Evaluate/loss', 'Evaluate/mIoU', 'Evaluate/mDice', 'Evaluate/Kappa', 'Evaluate/mFscore'):
        assert tag in scalars, tag
    assert [r.id for r in reader.get_data('scalar', 'Evaluate/loss')] == [2, 4]


def test_config_dump_names_files_and_flags(tmp_path):
    base = tmp_path / 'base.yml'
    base.write_text(yaml.safe_dump({'batch_size': 2, 'model': {'type': 'A', 'width': 8},
                                    'train_dataset': {'type': 'D', 'transforms': [{'type': 'Normalize'}]}}))
    child = tmp_path / 'child.yml'
    child.write_text(yaml.safe_dump({'_base_': 'base.yml', 'model': {'width': 16}}))
    cfg = Config(str(child), opts=['train_dataset.transforms.0.mean=[1, 2, 3]'], iters=7)
    text = dump_with_origins(cfg)
    lines = {ln.split(':')[0].strip(): ln for ln in text.splitlines() if ':' in ln and not ln.startswith('#')}
    assert lines['batch_size'].endswith(f'# {os.path.normpath(base)}')
    assert lines['width'].endswith(f'# {os.path.normpath(child)}')
    assert lines['type'].endswith(f'# {os.path.normpath(base)}')
    assert lines['iters'] == 'iters: 7  # --iters'
    assert '(0.mean from --opts)' in lines['transforms']
    assert yaml.safe_load(text) == cfg.dic


def test_eta_is_the_mean_after_warmup_plus_evaluations():
    t = StepTimer(skip=2)
    assert t.eta(100) is None
    for s in (9.0, 7.0, 1.0, 2.0, 3.0):  # the two warm-up steps are not counted
        t.step(s)
    assert t.mean == pytest.approx(2.0)
    t.evaluation(5.0)
    t.evaluation(7.0)
    assert t.eta(10, remaining_evals=3) == pytest.approx(10 * 2.0 + 3 * 6.0)


def test_progress_prints_lines_off_a_terminal():
    lines = _Console()
    logging.getLogger('zoo').addHandler(lines)
    try:
        bar = Progress(10, 'eval', stream=io.StringIO())  # not a TTY
        for _ in range(10):
            bar.update()
        bar.close()
        Progress(10, 'eval', stream=io.StringIO(), enabled=False).update()  # other ranks: silent
    finally:
        logging.getLogger('zoo').removeHandler(lines)
    msgs = [ln.split('INFO: ')[1] for ln in lines.lines]
    assert [m.split(',')[0] for m in msgs] == ['[eval] 3/10 (30%)', '[eval] 6/10 (60%)', '[eval] 9/10 (90%)',
                                               '[eval] 10/10 (100%)']


def test_known_warnings_are_held_until_verbose(capsys):
    shown = []
    with warnings.catch_warnings():
        warnings.simplefilter('always')
        previous, quiet._state['previous'] = quiet._state['previous'], lambda *a, **k: shown.append(str(a[0]))
        saved = warnings.showwarning
        warnings.showwarning = quiet._showwarning
        try:
            quiet._state['verbose'] = False
            n = quiet.held_count()
            warnings.warn_explicit('No ccache found. Please install it', UserWarning,
                                   '/x/paddle/utils/cpp_extension/extension_utils.py', 1)
            warnings.warn_explicit('something else', UserWarning, '/x/other.py', 1)
            assert quiet.held_count() == n + 1 and shown == ['something else']
            quiet.quiet_third_party(verbose=True)  # replays what was held
            assert shown[-1].startswith('No ccache found') and quiet.held_count() == 0
        finally:
            quiet._state['verbose'] = False
            quiet._state['previous'] = previous
            warnings.showwarning = saved


def test_tool_output_is_quiet_by_default():
    """A fresh process: no third-party warning on stderr; --verbose shows it."""
    if shutil.which('ccache'):
        pytest.skip('ccache is installed: Paddle has nothing to warn about')
    code = 'import sys; sys.path.insert(0, %r); import zoo; from zoo.utils.quiet import quiet_third_party; ' \
           'quiet_third_party("--verbose" in sys.argv); import zoo.engine.trainer, zoo.engine.evaluator; ' \
           'print("matplotlib loaded:", "matplotlib" in sys.modules)' % ROOT
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONWARNINGS', 'GLOG_minloglevel')}
    quiet_run = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env, timeout=300)
    loud = subprocess.run([sys.executable, '-c', code, '--verbose'], capture_output=True, text=True, env=env,
                          timeout=300)
    assert quiet_run.returncode == 0 and loud.returncode == 0
    assert 'ccache' not in quiet_run.stderr, quiet_run.stderr
    assert 'No ccache found' in loud.stderr, loud.stderr
    # matplotlib stays out of training: imported only when an evaluation draws its pictures
    assert 'matplotlib loaded: False' in quiet_run.stdout


def test_progress_lines_at_each_quarter_when_ranks_advance_it_together():
    """Off a terminal, evaluation progress is a line per quarter, also when two ranks add 2 at a time."""
    from zoo.utils.logger import logger
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())
    h = Keep()
    logger.addHandler(h)
    try:
        p = Progress(1002, 'eval', lines=True)
        for _ in range(501):
            p.update(2)
    finally:
        logger.removeHandler(h)
    assert [m.split()[1] for m in seen if m.startswith('[eval]')] == ['252/1002', '502/1002', '754/1002', '1002/1002']
