"""Class names and palettes (zoo/datasets/meta.py): every dataset exposes class_names / palette, from
the config when given, else its defaults; tools that read no data (predict.py) get the same values
from the config; val's table and the colours use them."""
import json

import cv2
import numpy as np
import pytest

import zoo
from zoo.datasets import meta
from zoo.datasets.base import Dataset
from zoo.engine.visual import class_names_of
from zoo.engine.visual import get_palette
from zoo.utils.config import Config
from zoo.utils.errors import ConfigError
from zoo.utils.registry import DATASETS


def tiny_root(tmp_path):
    (tmp_path / 'i').mkdir()
    cv2.imwrite(str(tmp_path / 'i/a.png'), np.zeros((4, 6, 3), np.uint8))
    cv2.imwrite(str(tmp_path / 'i/a_l.png'), np.zeros((4, 6), np.uint8))
    (tmp_path / 'l.txt').write_text('i/a.png i/a_l.png\n')
    return str(tmp_path)


def test_config_names_and_palette_reach_the_dataset_val_table_and_predict_colours(tmp_path):
    node = {'type': 'Dataset', 'dataset_root': tiny_root(tmp_path), 'val_path': 'l.txt', 'mode': 'val',
            'num_classes': 3, 'class_names': ['background', 'crack', 'rust'],
            'palette': [[1, 2, 3], [200, 0, 0], [0, 0, 200]], 'transforms': []}
    cfg = Config(_write(tmp_path, {'val_dataset': node}))
    ds = zoo.build_dataset(cfg, 'val')
    assert ds.class_names == ['background', 'crack', 'rust'] and ds.palette[2] == [0, 0, 200]
    assert meta.config_meta(cfg) == (ds.class_names, ds.palette)  # predict.py / export read no data
    assert class_names_of(ds, 3) == ['background', 'crack', 'rust']  # val's per-class table
    assert get_palette(3, meta.config_meta(cfg)).tolist() == ds.palette  # predict.py's colours
    assert get_palette(3, ds).tolist() == ds.palette                     # VisualDL images


def test_defaults_per_dataset_and_generic():
    for name in ('Cityscapes', 'ADE20K', 'COCOStuff10k', 'LIP', 'PascalVOC', 'CamVid', 'DemoShapes'):
        cls = DATASETS[name]
        names, palette = cls.default_meta(cls.NUM_CLASSES)
        assert len(names) == len(palette) == cls.NUM_CLASSES, name
        assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in palette), name
    names, palette = DATASETS['COCOStuff10k'].default_meta(182)
    assert len(names) == 182 and names[11] == 'street sign' and tuple(palette[11]) == (0, 0, 0)
    assert meta.CITYSCAPES_CLASSES[0] == 'road' and meta.VOC_PALETTE[15] == (192, 128, 128)
    names, palette = meta.resolve_meta(4)  # the generic Dataset without names: ids and VOC colours
    assert names == ['0', '1', '2', '3'] and palette == meta.voc_palette(4).tolist()


def test_wrong_names_or_palette_are_one_line_config_errors(tmp_path):
    root = tiny_root(tmp_path)
    with pytest.raises(ConfigError, match=r'class_names: expected 3 non-empty names \(num_classes\), got 2'):
        Dataset(root, [], num_classes=3, train_path='l.txt', class_names=['a', 'b'])
    with pytest.raises(ConfigError, match=r'palette: expected 2 \[r, g, b\] triples'):
        Dataset(root, [], num_classes=2, train_path='l.txt', palette=[[0, 0, 0], [0, 0, 300]])
    node = {'type': 'Cityscapes', 'dataset_root': root, 'class_names': ['road']}
    with pytest.raises(ConfigError, match=r'cfg.yml: val_dataset.class_names: expected 19'):
        meta.config_meta(Config(_write(tmp_path, {'val_dataset': node})))


def _write(tmp_path, dic):
    path = tmp_path / 'cfg.yml'
    path.write_text(json.dumps(dic))
    return str(path)
