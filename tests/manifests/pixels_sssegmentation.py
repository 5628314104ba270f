"""Write ``pixels_sssegmentation.json``: what sssegmentation 1.7.0's test pipelines feed the network.

Run by hand in the sssegmentation reference environment (sssegmentation 1.7.0 installed
--no-deps, torch 2.13 CPU, OpenCV 5.0.0; configs from the release source tree), from the
repository root:

    /work/scratch/envs/ssseg/bin/python tests/manifests/pixels_sssegmentation.py \\
        --configs /work/scratch/src/sssegmentation-1.7.0/ssseg/configs

For each dataset config the MCIBI configs use (``DATASET_CFG_*`` of ``ssseg/configs/_base_/datasets``)
and each size of ``pixel_cases.SIZES``: the generated PNG read as sssegmentation's
``BaseDataset.read`` does (``cv2.imread``), through the config's ``test`` data pipelines built by
sssegmentation's own ``BaseDataset.constructtransforms`` (Resize, Normalize, ToTensor), stored
as ``pixel_cases.digests`` (``tests/test_pixel_parity.py`` compares ours).
"""
import argparse
import os
import sys
import tempfile


HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'pixels_sssegmentation.json')
sys.path.insert(0, HERE)

import pixel_cases as pc  # noqa: E402
from ssseg_env import stub_torchvision  # noqa: E402

DATASET_CONFIGS = {'sssegmentation/cityscapes': ('cityscapes_512x1024', 'DATASET_CFG_CITYSCAPES_512x1024'),
                   'sssegmentation/ade20k': ('ade20k_512x512', 'DATASET_CFG_ADE20k_512x512'),
                   'sssegmentation/cocostuff10k': ('cocostuff10k_512x512', 'DATASET_CFG_COCOStuff10k_512x512'),
                   'sssegmentation/lip': ('lip_473x473', 'DATASET_CFG_LIP_473x473')}
MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]


def load_dataset_cfg(configs_dir, module, name):
    """``DATASET_CFG_*`` from the source tree's ``configs/_base_/datasets/<module>.py``."""
    import importlib
    sys.path.insert(0, os.path.dirname(os.path.abspath(configs_dir)))
    mod = importlib.import_module(f'configs._base_.datasets.{module}')
    return getattr(mod, name), mod.__file__


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--configs', required=True, help="sssegmentation 1.7.0's ssseg/configs (source tree)")
    args = p.parse_args()
    stub_torchvision()
    import copy

    import cv2
    import ssseg
    import torch
    from ssseg.modules.datasets.base import BaseDataset
    cv2.setNumThreads(0)
    val = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, (module, name) in DATASET_CONFIGS.items():
            cfg, path = load_dataset_cfg(args.configs, module, name)
            pipelines = copy.deepcopy(cfg['test']['data_pipelines'])
            transforms = BaseDataset.constructtransforms(None, copy.deepcopy(pipelines))

            def network_input(png):
                image = cv2.imread(png)  # BaseDataset.read
                h, w = image.shape[:2]
                return transforms({'image': image, 'height': h, 'width': w})['image'].numpy()

            val[key] = {'reference': pc.REFERENCES[key], 'config': os.path.relpath(path, os.path.dirname(args.configs)),
                        'pipeline': [f'{t}({c})' for t, c in pipelines], 'mean': MEAN, 'std': STD,
                        **pc.record_val(key, tmp, network_input, MEAN, STD)}
    pc.save_manifest(OUT, 'tests/manifests/pixels_sssegmentation.py',
                     {'sssegmentation': ssseg.__version__, 'torch': torch.__version__, 'opencv': cv2.__version__},
                     val=val)


if __name__ == '__main__':
    main()
