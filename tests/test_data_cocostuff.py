"""COCO-Stuff-10k: .mat -> PNG, and both label conventions (171 mmseg / 182 sssegmentation)."""
import os

import numpy as np
import pytest
from scipy.io import savemat

from fixtures_data import coco_s_matrix, make_cocostuff10k, run_tool
from zoo.datasets.cocostuff import COCOStuff10k
from zoo.datasets.prepare.cocostuff import raw_to_train_id_lut
from zoo.utils.errors import DataError


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    r = make_cocostuff10k(str(tmp_path_factory.mktemp('coco')))
    assert run_tool('cocostuff', [r]) == 0
    return r


def test_png_keeps_raw_ids(root):
    import cv2
    png = cv2.imread(os.path.join(root, 'labels', 'COCO_train2014_000000000077.png'), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(png, coco_s_matrix())


def test_171_class_mapping(root):
    ds = COCOStuff10k(root, transforms=[], mode='train')
    assert len(ds) == 2 and ds.num_classes == 171 and len(ds.CLASSES) == 171
    _, label = ds[0]
    row = label[0]
    assert row[0] == 255            # unlabeled -> ignore
    assert row[8] == 0              # person
    assert row[16] == 11            # stop sign: id 13 follows the unused id 12
    assert row[24] == 80            # banner, the first stuff class (92 - 11 unused - 1)
    assert row[32] == 170           # wood, the last class
    assert ds.CLASSES[11] == 'stop sign' and ds.CLASSES[80] == 'banner' and ds.CLASSES[170] == 'wood'
    assert len(COCOStuff10k(root, [], mode='val')) == 1


def test_182_class_mapping_sssegmentation(root):
    ds = COCOStuff10k(root, transforms=[], mode='test', num_classes=182)
    _, label = ds[0]
    row = label[0]
    assert (row[0], row[8], row[16], row[24], row[32]) == (255, 0, 12, 91, 181)
    assert ds.class_names[12] == 'stop sign' and ds.class_names[181] == 'wood' and len(ds.palette) == 182
    lut = raw_to_train_id_lut(182)
    assert lut[0] == 255 and lut[1] == 0 and lut[182] == 181


def test_bad_num_classes_and_missing_labels(tmp_path, root):
    with pytest.raises(DataError, match='171.*182'):
        COCOStuff10k(root, [], num_classes=172)
    fresh = make_cocostuff10k(str(tmp_path))
    with pytest.raises(DataError, match=r"labels' does not exist; run .*tools/data/cocostuff.py"):
        COCOStuff10k(fresh, [], mode='train')
    os.remove(os.path.join(fresh, 'annotations', 'COCO_train2014_000000000078.mat'))
    with pytest.raises(DataError, match=r"COCO_train2014_000000000078\.mat.*imageLists/train\.txt"):
        run_tool_prepare(fresh)


def test_out_of_range_mat_names_file(tmp_path):
    fresh = make_cocostuff10k(str(tmp_path))
    bad = os.path.join(fresh, 'annotations', 'COCO_train2014_000000000285.mat')
    savemat(bad, {'S': np.full((4, 4), 200, np.uint16)})
    with pytest.raises(DataError, match=r'000000000285\.mat.*outside 0\.\.182'):
        run_tool_prepare(fresh)


def run_tool_prepare(root):
    from zoo.datasets.prepare.cocostuff import prepare_cocostuff10k
    prepare_cocostuff10k(root)
