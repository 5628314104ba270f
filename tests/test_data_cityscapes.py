"""Cityscapes preparation: official polygons -> labelTrainIds, then the loader."""
import json
import os

import numpy as np
import pytest

from fixtures_data import H, W, make_cityscapes, run_tool
from zoo.datasets.cityscapes import Cityscapes
from zoo.datasets.prepare.cityscapes import LABELS, polygons_to_train_ids, prepare_cityscapes
from zoo.utils.errors import DataError


def expected_fixture_label():
    """What json2labelImg draws for fixtures_data.CITY_OBJECTS (PIL fills rectangles inclusively)."""
    lab = np.full((H, W), 255, np.uint8)
    lab[24:48, 0:64] = 0      # road
    lab[30:41, 10:31] = 13    # car over road; the deleted person and the license plate are not drawn
    lab[5:16, 40:51] = 13     # cargroup -> car
    lab[0:11, 55:61] = 255    # polegroup is its own label (ignored), drawn over nothing
    return lab


def test_table_has_19_contiguous_train_ids():
    train_ids = sorted(lab.train_id for lab in LABELS if 0 <= lab.train_id < 255)
    assert train_ids == list(range(19))
    names = {lab.name: lab.train_id for lab in LABELS}
    assert names['car'] == 13 and names['road'] == 0 and names['bicycle'] == 18 and names['caravan'] == 255


def test_prepare_via_cli_then_loader_splits(tmp_path):
    root = make_cityscapes(str(tmp_path / 'cityscapes'), splits=('train', 'val', 'test'), per_city=2)
    assert run_tool('cityscapes', [root]) == 0
    pngs = sorted(p for d, _, fs in os.walk(os.path.join(root, 'gtFine')) for p in fs
                  if p.endswith('_gtFine_labelTrainIds.png'))
    assert len(pngs) == 6
    ds = Cityscapes(root, transforms=[], mode='train')
    img, label = ds[0]
    assert img.shape == (3, H, W)
    np.testing.assert_array_equal(label, expected_fixture_label())
    assert label[35, 20] == 13                    # a car polygon becomes trainId 13
    assert len(Cityscapes(root, [], mode='val')) == 2
    assert len(Cityscapes(root, [], mode='trainval')) == 4
    test = Cityscapes(root, [], mode='test')
    assert len(test) == 2 and (test[0][1] == 255).all()   # no labels in test


def test_later_objects_cover_earlier_and_group_fallback():
    ann = {'imgHeight': 10, 'imgWidth': 10, 'objects': [
        {'label': 'sky', 'polygon': [[0, 0], [9, 0], [9, 9], [0, 9]]},
        {'label': 'persongroup', 'polygon': [[2, 2], [6, 2], [6, 6], [2, 6]]},
        {'label': 'bicycle', 'polygon': [[4, 4], [8, 4], [8, 8], [4, 8]]},
        {'label': 'truck', 'polygon': [[0, 0], [9, 0], [9, 9], [0, 9]], 'deleted': 1},
    ]}
    lab = polygons_to_train_ids(ann)
    assert lab[0, 0] == 10 and lab[3, 3] == 11 and lab[5, 5] == 18 and lab[8, 8] == 18
    assert lab.dtype == np.uint8 and lab.shape == (10, 10)


def test_unknown_label_names_the_file(tmp_path):
    root = make_cityscapes(str(tmp_path / 'cs'), splits=('train', 'val'))
    bad = next(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(root, 'gtFine', 'train')) for f in fs)
    with open(bad, 'w') as f:
        json.dump({'imgHeight': 4, 'imgWidth': 4, 'objects': [{'label': 'spaceship', 'polygon': [[0, 0], [1, 1]]}]}, f)
    with pytest.raises(DataError, match=r"spaceship") as e:
        prepare_cityscapes(root)
    assert os.path.basename(bad) in str(e.value) and '\n' not in str(e.value)


def test_missing_gtfine_names_folder_and_tree(tmp_path, capsys):
    (tmp_path / 'leftImg8bit').mkdir()
    with pytest.raises(DataError, match=r"gtFine'.*does not exist; expected <root>/gtFine/\{train,val,test\}"):
        prepare_cityscapes(str(tmp_path))
    capsys.readouterr()
    assert run_tool('cityscapes', [tmp_path]) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: Cityscapes: folder') and len(err.strip().splitlines()) == 1


def test_trainval_returns_the_augmented_label(tmp_path):
    root = make_cityscapes(str(tmp_path / 'cs'), splits=('train', 'val'))
    prepare_cityscapes(root)
    crop = {'type': 'RandomCrop', 'crop_size': [16, 32]}
    img, label = Cityscapes(root, transforms=[crop], mode='trainval')[0]
    assert img.shape == (3, 16, 32) and label.shape == (16, 32)


def test_parallel_prepare_matches_serial(tmp_path):
    import cv2
    a = make_cityscapes(str(tmp_path / 'a'), splits=('train', 'val'), per_city=2)
    b = make_cityscapes(str(tmp_path / 'b'), splits=('train', 'val'), per_city=2)
    assert prepare_cityscapes(a) == prepare_cityscapes(b, nproc=2) == {'train': 2, 'val': 2}
    for split in ('train', 'val'):
        for name in sorted(os.listdir(os.path.join(a, 'gtFine', split, 'aachen'))):
            if name.endswith('_labelTrainIds.png'):
                pa, pb = (os.path.join(r, 'gtFine', split, 'aachen', name) for r in (a, b))
                np.testing.assert_array_equal(cv2.imread(pa, -1), cv2.imread(pb, -1))
