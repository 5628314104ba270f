"""test_tipc/: every backbone family of every model has an up-to-date chain whose demo config
builds, chains parse, failures are logged, and the Fast-SCNN ``lite_train_lite_infer`` chain
(train -> eval -> export -> 8 inference runs) succeeds. The other chains run under
``pytest -m "tipc and slow"`` (test_every_chain_lite_train_lite_infer_succeeds, ~1 h on 2 cores)."""
import glob
import os
import shlex
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'test_tipc'))
import chain  # noqa: E402  (test_tipc/chain.py)
import gen_chains  # noqa: E402
from zoo.datasets.demo import DEMO_CLASSES

FASTSCNN_TXT = os.path.join(REPO, 'test_tipc', 'configs', 'fast_scnn', 'train_infer_python.txt')


def chain_files():
    return sorted(glob.glob(os.path.join(REPO, 'test_tipc', 'configs', '*', 'train_infer_python.txt')))


def test_gen_chains_check_passes():
    """Every backbone family of every config folder has a chain, and the chains on disk are what
    gen_chains.py writes (re-run it after adding or changing a config)."""
    r = subprocess.run([sys.executable, os.path.join(REPO, 'test_tipc', 'gen_chains.py'), '--check'],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_one_chain_per_backbone_family():
    chains = gen_chains.model_chains()
    # the folder's lightest family keeps the folder name; the others are named after their backbone
    assert {'fast_scnn', 'regseg', 'dmnet', 'deeplabv3', 'deeplabv3_resnet50-vd-os8', 'mcibi', 'mcibi_s101-d8',
            'mcibi_hrnetv2-w48'} <= set(chains)
    assert os.path.basename(chains['mcibi']).startswith('mcibi_r50-d8_')
    assert os.path.basename(chains['deeplabv3']).startswith('deeplabv3_r50-d8_')  # mmseg ResNetV1c
    assert os.path.basename(chains['deeplabv3_resnet50-vd-os8']).startswith('deeplabv3_resnet50-vd-os8_')  # PaddleSeg ResNet_vd
    has_vit = bool(glob.glob(os.path.join(REPO, 'configs', 'mcibi', '*vit-large*.yml')))
    assert ('mcibi_vit-large' in chains) == has_vit
    from zoo.utils.config import Config
    families = {gen_chains.backbone_family(Config(p)) for p in chains.values()}
    assert len(families) == len(chains)


@pytest.mark.parametrize('txt', chain_files(), ids=lambda p: os.path.basename(os.path.dirname(p)))
def test_chain_references_a_demo_config_whose_model_builds(txt):
    import zoo
    from zoo.builder import validate_config
    from zoo.utils.config import Config
    name = os.path.basename(os.path.dirname(txt))
    sections = chain.parse_config(txt)
    assert sections['train_params']['model_name'] == name
    lines = [sections['train_params']['norm_train'], sections['eval_params']['eval'],
             sections['export_params']['norm_export'], sections['infer_params']['infer_export']]
    ymls = {shlex.split(line)[shlex.split(line).index('--config') + 1] for line in lines}
    assert ymls == {f'test_tipc/configs/{name}/{name}_demo.yml'}, ymls
    yml = os.path.join(REPO, ymls.pop())
    assert os.path.isfile(yml)
    cfg = Config(yml)
    validate_config(cfg)
    assert cfg.get('train_dataset.type') == 'DemoShapes' and cfg.get('model.num_classes') == len(DEMO_CLASSES)
    assert cfg.get('train_dataset.dataset_root') == 'test_tipc/data/demo'  # what prepare.sh makes
    assert 'http' not in repr(cfg.get('model')), f'{yml}: a chain must not download weights'
    import paddle
    with paddle.LazyGuard():  # structure only (the chains themselves train and export it)
        model = zoo.build_model(cfg)
    assert sum(p.size for p in model.parameters()) > 0
    del model


def test_chain_config_values_depend_on_the_mode():
    sections = chain.parse_config(FASTSCNN_TXT)
    assert sections['train_params']['model_name'] == 'fast_scnn'
    assert sections['infer_params']['--batch_size'] == '1|2'  # the training --batch_size is separate
    assert chain.for_mode(sections['train_params']['--iters'], 'lite_train_lite_infer') == '20'
    assert chain.for_mode(sections['train_params']['--iters'], 'whole_infer') == 'null'
    assert chain.choices(sections['infer_params']['--enable_mkldnn'], 'whole_infer') == ['True', 'False']


def test_failed_steps_are_logged_and_counted(tmp_path):
    txt = tmp_path / 'train_infer_python.txt'
    text = open(FASTSCNN_TXT).read().replace('model_name:fast_scnn', 'model_name:_tipc_selftest')
    text = text.replace('norm_train:tools/train.py', 'norm_train:tools/no_such_train.py')
    text = text.replace('norm_export:tools/export.py', 'norm_export:tools/no_such_export.py')
    txt.write_text(text)
    r = subprocess.run(['bash', os.path.join(REPO, 'test_tipc', 'test_train_inference_python.sh'), str(txt),
                        'lite_train_lite_infer'], capture_output=True, text=True, cwd=REPO, timeout=120)
    log = os.path.join(REPO, 'test_tipc', 'output', '_tipc_selftest', 'lite_train_lite_infer', 'results_python.log')
    try:
        lines = open(log).read().splitlines()
        assert r.returncode == 3, r.stdout + r.stderr  # train, export and the int8 export (no weights)
        assert len(lines) == 3 and all(ln.startswith('Run failed with command - ') for ln in lines), lines
        assert 'no_such_train.py' in lines[0] and 'no_such_export.py' in lines[1] and 'tools/quant.py' in lines[2]
    finally:
        import shutil
        shutil.rmtree(os.path.join(REPO, 'test_tipc', 'output', '_tipc_selftest'), ignore_errors=True)


def run_lite_chain(name, timeout):
    """prepare.sh then test_train_inference_python.sh, as test_tipc/README.md says; the log lines."""
    mode = 'lite_train_lite_infer'
    txt = os.path.join(REPO, 'test_tipc', 'configs', name, 'train_infer_python.txt')
    subprocess.run(['bash', os.path.join(REPO, 'test_tipc', 'prepare.sh'), txt, mode],
                   check=True, capture_output=True, cwd=REPO, timeout=300)
    r = subprocess.run(['bash', os.path.join(REPO, 'test_tipc', 'test_train_inference_python.sh'), txt, mode],
                       capture_output=True, text=True, cwd=REPO, timeout=timeout)
    log = os.path.join(REPO, 'test_tipc', 'output', name, mode, 'results_python.log')
    lines = open(log).read().splitlines()
    assert r.returncode == 0, r.stdout[-3000:]
    assert all(ln.startswith('Run successfully with command - ') for ln in lines), lines
    return lines


def grid_size(name):
    infer = chain.parse_config(os.path.join(REPO, 'test_tipc', 'configs', name, 'train_infer_python.txt'))['infer_params']
    n = 1
    for key in ('--enable_mkldnn', '--cpu_threads', '--batch_size'):
        n *= len(chain.choices(infer[key], 'lite_train_lite_infer'))
    return n


@pytest.mark.tipc
def test_fastscnn_lite_train_lite_infer_chain_succeeds():
    mode = 'lite_train_lite_infer'
    lines = run_lite_chain('fast_scnn', timeout=900)
    steps = [ln.split(' with command - ')[1].split()[1] for ln in lines]
    # train, eval, export, then oneDNN on/off x 1/2 threads x batch 1/2, then the int8 export + its inference
    assert steps[:3] == ['tools/train.py', 'tools/val.py', 'tools/export.py'] and len(lines) == 13, lines
    assert steps[11] == 'tools/quant.py' and '--precision int8 --backend' not in lines[12]
    assert '--backend onnxruntime --precision int8' in lines[12]
    infer_lines = lines[3:11]
    for mkldnn in ('True', 'False'):
        for threads in ('1', '2'):
            for bs in ('1', '2'):
                assert any(f'--enable_mkldnn {mkldnn} --cpu_threads {threads} --batch_size {bs}' in ln
                           for ln in infer_lines)
    out = os.path.join(REPO, 'test_tipc', 'output', 'fast_scnn', mode)
    masks = [f for _, _, names in os.walk(os.path.join(out, 'infer_cpu_mkldnn_True_threads_2_bs_2'))
             for f in names if f.endswith('.png')]
    assert len(masks) == 4  # one pseudo-color mask per lite val image


@pytest.mark.slow
@pytest.mark.tipc
@pytest.mark.timeout(3600)
@pytest.mark.parametrize('name', [os.path.basename(os.path.dirname(p)) for p in chain_files()
                                  if os.path.basename(os.path.dirname(p)) != 'fast_scnn'])
def test_every_chain_lite_train_lite_infer_succeeds(name):
    """The other chains (not in make test: ~1 h in all on 2 cores; times in test_tipc/README.md)."""
    lines = run_lite_chain(name, timeout=3600)
    steps = [ln.split(' with command - ')[1].split()[1] for ln in lines]
    assert steps[:3] == ['tools/train.py', 'tools/val.py', 'tools/export.py'], lines
    assert len(lines) == 3 + grid_size(name) + 2, lines  # + int8: tools/quant.py and one inference
