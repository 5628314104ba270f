"""Write a TIPC chain for every backbone family of every model in configs/: ``test_tipc/configs/<name>/``.

    python test_tipc/gen_chains.py          # (re)write every chain
    python test_tipc/gen_chains.py --check  # exit 1 if a model has no chain or a chain is stale

One chain per backbone family of each config folder (one architecture): the family is the
model type plus the backbone type without its depth (``ResNet50_vd`` and ``ResNet101_vd`` are
one family, ``ResNetV1c`` another, ``ResNeSt``, ``HRNet``, ``VisionTransformer`` ...). The
family of the folder's lightest config (smallest backbone depth) keeps the folder name
(``mcibi``); every other family is named after the backbone token of its config file names
(``mcibi_s101-d8``, ``mcibi_hrnetv2-w48``, ``deeplabv3_resnet50-vd-os8``). A family's lightest
config is the base of ``<name>_demo.yml``: the same model and loss on the generated demo data
(test_tipc/prepare.sh), no pretrained downloads, with the config's own val normalization.
``train_infer_python.txt`` holds the chain in PaddleSeg's key:value layout.
"""
import argparse
import copy
import glob
import io
import os
import re
import sys

import yaml


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from zoo.datasets.demo import DEMO_CLASSES  # noqa: E402

TXT = """===========================train_params===========================
model_name:{name}
python:python
gpu_list:-1
Global.use_gpu:False
--precision:fp32
--iters:lite_train_lite_infer=20|whole_infer=null
--save_dir:
--batch_size:lite_train_lite_infer=2|whole_infer=null
--model_path:null
train_model_name:best_model/model.pdparams
train_infer_img_dir:test_tipc/data/demo/leftImg8bit/val
null:null
##
trainer:norm_train
norm_train:tools/train.py --config {cfg} --do_eval --save_interval 10 --log_iters 5 --num_workers 0 --seed 100
pact_train:null
fpgm_train:null
distill_train:null
null:null
null:null
##
===========================eval_params===========================
eval:tools/val.py --config {cfg} --num_workers 0 --device cpu
null:null
##
===========================export_params===========================
--save_dir:
--model_path:
norm_export:tools/export.py --config {cfg}
quant_export:tools/quant.py --config {cfg} --calib_images 4
fpgm_export:null
distill_export:null
export1:null
export2:null
===========================infer_params===========================
infer_model:null
infer_export:tools/export.py --config {cfg}
infer_quant:True
inference:deploy/python/infer.py
--device:cpu
--enable_mkldnn:True|False
--cpu_threads:1|2
--batch_size:1|2
--use_trt:False
--precision:fp32
--int8_backend:onnxruntime
--config:
--image_path:lite_train_lite_infer=test_tipc/data/demo/leftImg8bit/val|whole_infer=test_tipc/data/demo_whole/leftImg8bit/val
--save_log_path:null
--benchmark:True
infer_extra:--warmup 1 --repeats 2
--save_dir:
--model_name:{name}
"""

ITERS = 20  # lite_train_lite_infer: training iterations at batch 2


def _depth(cfg):
    """Backbone depth of a ResNet-family config; other backbones sort after every ResNet."""
    node = cfg.get('model.backbone')
    if isinstance(node, dict) and isinstance(node.get('depth'), int):
        return node['depth']
    if isinstance(node, dict) and str(node.get('type', '')).startswith('ResNet'):
        digits = ''.join(ch for ch in node['type'] if ch.isdigit())
        return int(digits) if digits else 50
    return 0 if not isinstance(node, dict) else 10 ** 6


def _lightest(paths, configs):
    return sorted(paths, key=lambda p: (_depth(configs[p]), '101' in p, p))[0]


def backbone_family(cfg):
    """``(model type, backbone type without its depth)``: the configs one chain stands for.
    PaddleSeg writes the depth into the type name (``ResNet50_vd``), mmseg into ``depth``
    (``ResNetV1c``, whose ``1`` is a version, not a depth)."""
    node = cfg.get('model.backbone')
    backbone = str(node.get('type')) if isinstance(node, dict) else None
    return cfg.get('model.type'), (re.sub(r'\d{2,3}', '', backbone) if backbone else None)


def _backbone_token(path, folder_paths):
    """``s101-d8`` for ``mcibi_s101-d8_ade20k_512x512_180e.yml``: the first file-name
    token after those that every config of the folder starts with."""
    stems = [os.path.splitext(os.path.basename(p))[0].split('_') for p in folder_paths]
    own = os.path.splitext(os.path.basename(path))[0].split('_')
    n = 0
    while n < len(own) - 1 and all(len(s) > n + 1 and s[n] == own[n] for s in stems):
        n += 1
    return own[n]


def model_chains():
    """``{chain name: base config path}``: the lightest config of each backbone family of every
    config folder except _base_ and demo. The family holding the folder's lightest config is
    named after the folder; the others ``<folder>_<backbone token>``."""
    from zoo.utils.config import Config
    out = {}
    for folder in sorted(glob.glob(os.path.join(REPO, 'configs', '*'))):
        name = os.path.basename(folder)
        if name in ('_base_', 'demo') or not os.path.isdir(folder):
            continue
        paths = sorted(glob.glob(os.path.join(folder, '*.yml')))
        if not paths:
            continue
        configs = {p: Config(p) for p in paths}
        families = {}
        for p in paths:
            families.setdefault(backbone_family(configs[p]), []).append(p)
        bases = [_lightest(ps, configs) for ps in families.values()]
        first = _lightest(bases, configs)
        for p in bases:
            chain = name if p == first else f'{name}_{_backbone_token(p, paths)}'
            if chain in out:
                raise SystemExit(f'error: two backbone families of configs/{name} both map to the chain {chain!r}')
            out[chain] = p
    return dict(sorted(out.items()))


def _no_pretrained(node):
    if isinstance(node, dict):
        return {k: (None if k == 'pretrained' else _no_pretrained(v)) for k, v in node.items()
                if k == 'pretrained' or isinstance(v, dict)}
    return node


def demo_config(base_path):
    from zoo.utils.config import Config
    cfg = Config(base_path)
    normalize = [t for t in cfg.get('val_dataset.transforms') or [] if t.get('type') == 'Normalize']
    normalize = normalize or [{'type': 'Normalize'}]
    model = {'num_classes': len(DEMO_CLASSES), **_no_pretrained(cfg.get('model'))}
    for key, value in (cfg.get('model') or {}).items():
        # a loss the recipe switches on late (MCIBI's memory loss from epoch 2) runs in the chain too
        if key.endswith('_start_iter') and isinstance(value, int) and value > ITERS // 2:
            model[key] = ITERS // 2

    def ds(mode, transforms):
        return {'_inherited_': False, 'type': 'DemoShapes', 'dataset_root': 'test_tipc/data/demo', 'mode': mode,
                'transforms': copy.deepcopy(transforms)}

    rel = os.path.relpath(base_path, os.path.join(REPO, 'test_tipc', 'configs', 'x'))
    out = {
        '_base_': rel,
        'batch_size': 2,
        'iters': ITERS,
        'train_dataset': ds('train', [{'type': 'RandomHorizontalFlip', 'prob': 0.5}] + normalize),
        'val_dataset': ds('val', normalize),
        'model': model,
        'test_config': {'is_slide': False, 'aug_eval': False},
        'train': {'log_iters': 5, 'save_interval': 10, 'keep_checkpoint_max': 1},
    }
    if (cfg.get('lr_scheduler.warmup_iters') or 0) > 0:  # the recipe's warmup is longer than 20 iters
        out['lr_scheduler'] = {'warmup_iters': 5}
    return out


def chain_files(name, base_path):
    """``{path: text}`` of the chain ``name`` built on ``base_path``."""
    folder = os.path.join(REPO, 'test_tipc', 'configs', name)
    yml = os.path.join(folder, f'{name}_demo.yml')
    text = io.StringIO()
    text.write(f'# TIPC: {os.path.relpath(base_path, REPO)} on the generated demo data '
               '(test_tipc/prepare.sh); written by test_tipc/gen_chains.py\n')
    yaml.safe_dump(demo_config(base_path), text, sort_keys=False)
    txt = TXT.format(name=name, cfg=os.path.relpath(yml, REPO))
    return {yml: text.getvalue(), os.path.join(folder, 'train_infer_python.txt'): txt}


def write_chain(name, base_path):
    for path, text in chain_files(name, base_path).items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w', encoding='utf-8') as f:
            f.write(text)
    return os.path.join(REPO, 'test_tipc', 'configs', name)


def check(chains):
    """Problems with the chains on disk: a backbone family without a chain, a chain that differs
    from what this script writes (stale), a chain folder no family asks for."""
    problems = []
    for name, base in chains.items():
        for path, text in chain_files(name, base).items():
            rel = os.path.relpath(path, REPO)
            if not os.path.isfile(path):
                problems.append(f'{rel}: missing (no TIPC chain for {os.path.relpath(base, REPO)})')
            elif open(path, encoding='utf-8').read() != text:
                problems.append(f'{rel}: stale (differs from what gen_chains.py writes)')
    for folder in sorted(glob.glob(os.path.join(REPO, 'test_tipc', 'configs', '*'))):
        if os.path.isdir(folder) and os.path.basename(folder) not in chains:
            problems.append(f'{os.path.relpath(folder, REPO)}: no backbone family in configs/ has this chain')
    return problems


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--check', action='store_true',
                   help='only check that every backbone family has an up-to-date chain')
    args = p.parse_args()
    chains = model_chains()
    if args.check:
        problems = check(chains)
        for line in problems:
            print(line)
        if problems:
            print('run python test_tipc/gen_chains.py')
        return 1 if problems else 0
    for name, path in chains.items():
        print(f'{write_chain(name, path)}  <- {os.path.relpath(path, REPO)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
