"""test_tipc/: every model has a chain, chains parse, failures are logged, and the Fast-SCNN
``lite_train_lite_infer`` chain (train -> eval -> export -> 8 inference runs) succeeds."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'test_tipc'))
import chain  # noqa: E402  (test_tipc/chain.py)
import gen_chains  # noqa: E402
from zoo.datasets.demo import DEMO_CLASSES

FASTSCNN_TXT = os.path.join(REPO, 'test_tipc', 'configs', 'fastscnn', 'train_infer_python.txt')


def test_every_model_in_configs_has_a_chain_whose_config_builds():
    from zoo.builder import validate_config
    from zoo.utils.config import Config
    folders = gen_chains.model_folders()
    assert 'fastscnn' in folders
    for name in folders:
        folder = os.path.join(REPO, 'test_tipc', 'configs', name)
        txt = os.path.join(folder, 'train_infer_python.txt')
        assert os.path.isfile(txt), f'no TIPC chain for configs/{name} (run python test_tipc/gen_chains.py)'
        cfg_line = chain.parse_config(txt)['train_params']['norm_train']
        yml = cfg_line.split('--config ')[1].split()[0]
        cfg = Config(os.path.join(REPO, yml))
        validate_config(cfg)
        assert cfg.get('train_dataset.type') == 'DemoShapes' and cfg.get('model.num_classes') == len(DEMO_CLASSES)
        assert 'http' not in repr(cfg.get('model')), f'{yml}: a chain must not download weights'


def test_chain_config_values_depend_on_the_mode():
    sections = chain.parse_config(FASTSCNN_TXT)
    assert sections['train_params']['model_name'] == 'fastscnn'
    assert sections['infer_params']['--batch_size'] == '1|2'  # the training --batch_size is separate
    assert chain.for_mode(sections['train_params']['--iters'], 'lite_train_lite_infer') == '20'
    assert chain.for_mode(sections['train_params']['--iters'], 'whole_infer') == 'null'
    assert chain.choices(sections['infer_params']['--enable_mkldnn'], 'whole_infer') == ['True', 'False']


def test_failed_steps_are_logged_and_counted(tmp_path):
    txt = tmp_path / 'train_infer_python.txt'
    text = open(FASTSCNN_TXT).read().replace('model_name:fastscnn', 'model_name:_tipc_selftest')
    text = text.replace('norm_train:tools/train.py', 'norm_train:tools/no_such_train.py')
    text = text.replace('norm_export:tools/export.py', 'norm_export:tools/no_such_export.py')
    txt.write_text(text)
    r = subprocess.run(['bash', os.path.join(REPO, 'test_tipc', 'test_train_inference_python.sh'), str(txt),
                        'lite_train_lite_infer'], capture_output=True, text=True, cwd=REPO, timeout=120)
    log = os.path.join(REPO, 'test_tipc', 'output', '_tipc_selftest', 'lite_train_lite_infer', 'results_python.log')
    try:
        lines = open(log).read().splitlines()
        assert r.returncode == 2, r.stdout + r.stderr
        assert len(lines) == 2 and all(ln.startswith('Run failed with command - ') for ln in lines), lines
        assert 'no_such_train.py' in lines[0] and 'no_such_export.py' in lines[1]
    finally:
        import shutil
        shutil.rmtree(os.path.join(REPO, 'test_tipc', 'output', '_tipc_selftest'), ignore_errors=True)


@pytest.mark.tipc
def test_fastscnn_lite_train_lite_infer_chain_succeeds():
    mode = 'lite_train_lite_infer'
    subprocess.run(['bash', os.path.join(REPO, 'test_tipc', 'prepare.sh'), FASTSCNN_TXT, mode],
                   check=True, capture_output=True, cwd=REPO, timeout=300)
    r = subprocess.run(['bash', os.path.join(REPO, 'test_tipc', 'test_train_inference_python.sh'), FASTSCNN_TXT,
                        mode], capture_output=True, text=True, cwd=REPO, timeout=900)
    log = os.path.join(REPO, 'test_tipc', 'output', 'fastscnn', mode, 'results_python.log')
    lines = open(log).read().splitlines()
    assert r.returncode == 0, r.stdout[-3000:]
    steps = [ln.split(' with command - ')[1].split()[1] for ln in lines]
    # train, eval, export, then oneDNN on/off x 1/2 threads x batch 1/2
    assert steps[:3] == ['tools/train.py', 'tools/val.py', 'tools/export.py'] and len(lines) == 11, lines
    assert all(ln.startswith('Run successfully with command - ') for ln in lines), lines
    infer_lines = lines[3:]
    for mkldnn in ('True', 'False'):
        for threads in ('1', '2'):
            for bs in ('1', '2'):
                assert any(f'--enable_mkldnn {mkldnn} --cpu_threads {threads} --batch_size {bs}' in ln
                           for ln in infer_lines)
    out = os.path.join(REPO, 'test_tipc', 'output', 'fastscnn', mode)
    masks = [f for _, _, names in os.walk(os.path.join(out, 'infer_cpu_mkldnn_True_threads_2_bs_2'))
             for f in names if f.endswith('.png')]
    assert len(masks) == 4  # one pseudo-color mask per lite val image
