"""Write a TIPC chain for every model in configs/: ``test_tipc/configs/<name>/``.

    python test_tipc/gen_chains.py          # (re)write every chain
    python test_tipc/gen_chains.py --check  # exit 1 if a model in configs/ has no chain

For each config folder (one architecture), the lightest config (smallest backbone depth) is
the base of ``<name>_demo.yml``: the same model and loss on the generated demo data
(test_tipc/prepare.sh), no pretrained downloads, with the config's own val
normalization. ``train_infer_python.txt`` holds the chain in PaddleSeg's key:value layout.
"""
import argparse
import copy
import glob
import os
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
quant_export:null
fpgm_export:null
distill_export:null
export1:null
export2:null
===========================infer_params===========================
infer_model:null
infer_export:tools/export.py --config {cfg}
infer_quant:False
inference:deploy/python/infer.py
--device:cpu
--enable_mkldnn:True|False
--cpu_threads:1|2
--batch_size:1|2
--use_trt:False
--precision:fp32
--config:
--image_path:lite_train_lite_infer=test_tipc/data/demo/leftImg8bit/val|whole_infer=test_tipc/data/demo_whole/leftImg8bit/val
--save_log_path:null
--benchmark:True
infer_extra:--warmup 1 --repeats 2
--save_dir:
--model_name:{name}
"""


def _depth(cfg):
    """Backbone depth of a ResNet-family config; other backbones sort after every ResNet."""
    node = cfg.get('model.backbone')
    if isinstance(node, dict) and isinstance(node.get('depth'), int):
        return node['depth']
    if isinstance(node, dict) and str(node.get('type', '')).startswith('ResNet'):
        digits = ''.join(ch for ch in node['type'] if ch.isdigit())
        return int(digits) if digits else 50
    return 0 if not isinstance(node, dict) else 10 ** 6


def model_folders():
    """{folder name: lightest config path} for every config folder except _base_ and demo."""
    from zoo.utils.config import Config
    out = {}
    for folder in sorted(glob.glob(os.path.join(REPO, 'configs', '*'))):
        name = os.path.basename(folder)
        if name in ('_base_', 'demo') or not os.path.isdir(folder):
            continue
        paths = sorted(glob.glob(os.path.join(folder, '*.yml')))
        if paths:
            out[name] = sorted(paths, key=lambda p: (_depth(Config(p)), '101' in p, p))[0]
    return out


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

    def ds(mode, transforms):
        return {'_inherited_': False, 'type': 'DemoShapes', 'dataset_root': 'test_tipc/data/demo', 'mode': mode,
                'transforms': copy.deepcopy(transforms)}

    rel = os.path.relpath(base_path, os.path.join(REPO, 'test_tipc', 'configs', 'x'))
    out = {
        '_base_': rel,
        'batch_size': 2,
        'iters': 20,
        'train_dataset': ds('train', [{'type': 'RandomHorizontalFlip', 'prob': 0.5}] + normalize),
        'val_dataset': ds('val', normalize),
        'model': model,
        'test_config': {'is_slide': False, 'aug_eval': False},
        'train': {'log_iters': 5, 'save_interval': 10, 'keep_checkpoint_max': 1},
    }
    if (cfg.get('lr_scheduler.warmup_iters') or 0) > 0:  # the recipe's warmup is longer than 20 iters
        out['lr_scheduler'] = {'warmup_iters': 5}
    return out


def write_chain(name, base_path):
    folder = os.path.join(REPO, 'test_tipc', 'configs', name)
    os.makedirs(folder, exist_ok=True)
    yml = os.path.join(folder, f'{name}_demo.yml')
    with open(yml, 'w', encoding='utf-8') as f:
        f.write(f'# TIPC: {os.path.relpath(base_path, REPO)} on the generated demo data '
                '(test_tipc/prepare.sh); written by test_tipc/gen_chains.py\n')
        yaml.safe_dump(demo_config(base_path), f, sort_keys=False)
    with open(os.path.join(folder, 'train_infer_python.txt'), 'w', encoding='utf-8') as f:
        f.write(TXT.format(name=name, cfg=os.path.relpath(yml, REPO)))
    return folder


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--check', action='store_true', help='only check that every model has a chain')
    args = p.parse_args()
    folders = model_folders()
    if args.check:
        missing = [n for n in folders
                   if not os.path.isfile(os.path.join(REPO, 'test_tipc', 'configs', n, 'train_infer_python.txt'))]
        if missing:
            print(f'no TIPC chain for: {", ".join(missing)} (run python test_tipc/gen_chains.py)')
            return 1
        return 0
    for name, path in folders.items():
        print(f'{write_chain(name, path)}  <- {os.path.relpath(path, REPO)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
