"""Pascal VOC 2012 + SBD: SegmentationClassAug, the train_aug list, modes of PascalVOC."""
import os

import numpy as np
import pytest

from fixtures_data import make_voc_sbd, run_tool, sbd_label, voc_label
from zoo.datasets.voc import PascalVOC
from zoo.utils.errors import DataError


@pytest.fixture(scope='module')
def devkit(tmp_path_factory):
    devkit, sbd = make_voc_sbd(str(tmp_path_factory.mktemp('voc')))
    assert run_tool('voc', [devkit, sbd]) == 0
    return devkit


def read_list(devkit, name):
    with open(os.path.join(devkit, 'VOC2012', 'ImageSets', 'Segmentation', name)) as f:
        return [line.strip() for line in f]


def test_train_aug_list(devkit):
    # (SBD train + SBD val + VOC train) - VOC val, each id once
    assert sorted(read_list(devkit, 'train_aug.txt')) == ['2007_000032', '2007_000039', '2008_000002', '2008_000003']
    assert sorted(read_list(devkit, 'aug.txt')) == ['2008_000002', '2008_000003']


def test_labels_voc_wins_boundary_kept(devkit):
    ds = PascalVOC(devkit, transforms=[], mode='trainaug')
    assert len(ds) == 4 and ds.mode == 'train'
    labels = {os.path.basename(p)[:-4]: ds[i][1] for i, (_, p) in enumerate(ds.file_list)}
    # 2007_000032 is in VOC train and SBD: VOC's palette PNG (person 15, boundary 255) is used
    np.testing.assert_array_equal(labels['2007_000032'], voc_label())
    assert labels['2007_000032'][9, 20] == 255 and labels['2007_000032'][20, 20] == 15
    np.testing.assert_array_equal(labels['2008_000002'], sbd_label())   # SBD .mat (car 7)
    val = PascalVOC(devkit, [], mode='val')
    assert len(val) == 1 and val.mode == 'val'
    assert len(PascalVOC(devkit, [], mode='train')) == 2 and len(PascalVOC(devkit, [], mode='trainval')) == 3
    assert PascalVOC.PALETTE[15] == (192, 128, 128) and PascalVOC.CLASSES[15] == 'person'


def test_errors(tmp_path, devkit):
    with pytest.raises(DataError, match='mode must be one of trainaug|mode must be one of train'):
        PascalVOC(devkit, [], mode='aug')
    fresh, sbd = make_voc_sbd(str(tmp_path))
    with pytest.raises(DataError, match=r"SegmentationClassAug' does not exist; run .*tools/data/voc.py"):
        PascalVOC(fresh, [], mode='trainaug')
    os.remove(os.path.join(sbd, 'dataset', 'cls', '2008_000003.mat'))
    with pytest.raises(DataError, match=r"2008_000003\.mat' does not exist; expected <sbd_root>/dataset/"):
        run_prepare(fresh, sbd)
    with pytest.raises(DataError, match=r"VOCdevkit/VOC2012' does not exist"):
        run_prepare(str(tmp_path / 'nope' / 'VOCdevkit'), sbd)


def run_prepare(devkit, sbd):
    from zoo.datasets.prepare.voc import prepare_voc_aug
    prepare_voc_aug(devkit, sbd)
