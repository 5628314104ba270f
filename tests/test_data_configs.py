"""Every config in configs/ whose train/val dataset is one of the prepared datasets (Cityscapes,
ADE20K, COCO-Stuff-10k, LIP, Pascal VOC, CamVid) builds that dataset from a miniature
official-layout tree, and one sample per distinct pipeline runs through its transforms.

Generic on purpose: configs are discovered by walking configs/**/*.yml, so a new config is
checked without editing this file.
"""
import glob
import json
import os

import numpy as np
import pytest

import zoo
from fixtures_data import PREPARED, prepared_root
from zoo.utils.config import Config
from zoo.utils.errors import ZooError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPLITS = (('train', 'train_dataset'), ('val', 'val_dataset'))


def _dataset_configs():
    out = []
    for path in sorted(glob.glob(os.path.join(REPO, 'configs', '**', '*.yml'), recursive=True)):
        try:
            dic = Config(path).dic
        except ZooError:
            out.append(path)  # a broken config is reported by the test, not hidden
            continue
        if any(isinstance(dic.get(k), dict) and dic[k].get('type') in PREPARED for _, k in SPLITS):
            out.append(path)
    return out


CONFIGS = _dataset_configs()


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    cache = {}

    def get(dataset_type):
        if dataset_type not in cache:
            cache[dataset_type] = prepared_root(dataset_type, str(tmp_path_factory.mktemp(dataset_type)))
        return cache[dataset_type]
    return get


_sampled = set()


def test_some_configs_found():
    names = {os.path.basename(p) for p in CONFIGS}
    assert {'ade20k.yml', 'cocostuff10k.yml', 'lip.yml', 'voc12aug.yml', 'camvid.yml'} <= names


@pytest.mark.parametrize('path', CONFIGS, ids=[os.path.relpath(p, REPO) for p in CONFIGS])
def test_config_builds_dataset_from_fixture(path, roots):
    cfg = Config(path)
    built = 0
    for split, key in SPLITS:
        node = cfg.dic.get(key)
        if not isinstance(node, dict) or node.get('type') not in PREPARED:
            continue
        node['dataset_root'] = roots(node['type'])
        ds = zoo.build_dataset(cfg, split)
        assert len(ds) > 0
        built += 1
        # run one sample through each distinct pipeline (same dataset + transforms once)
        sig = json.dumps({k: v for k, v in node.items() if k != 'dataset_root'}, sort_keys=True, default=str)
        if sig in _sampled:
            continue
        _sampled.add(sig)
        img, label = ds[0]
        assert img.ndim == 3 and img.shape[0] == 3 and img.dtype == np.float32
        assert label.dtype == np.int64 and label.ndim == 2
        if split == 'train':
            assert label.shape == img.shape[1:]
        vals = np.unique(label)
        assert ((vals < ds.num_classes) | (vals == ds.ignore_index)).all()
    assert built > 0
