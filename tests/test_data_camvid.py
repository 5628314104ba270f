"""CamVid 11 classes: RegSeg color labels and SegNet id labels -> one layout, RegSeg order."""
import os

import pytest

from fixtures_data import make_camvid_color, make_camvid_segnet, run_tool
from zoo.datasets.camvid import CamVid
from zoo.utils.errors import DataError


def test_color_labels_regseg(tmp_path):
    root = make_camvid_color(str(tmp_path))
    assert run_tool('camvid', [root]) == 0
    ds = CamVid(root, transforms=[], mode='trainval')
    assert len(ds) == 3 and ds.mode == 'train'
    _, label = ds[0]
    row = label[0]
    assert (row[0], row[20], row[40], row[50], row[60]) == (2, 3, 10, 255, 255)  # sky car bicyclist archway void
    assert len(CamVid(root, [], mode='test')) == 1 and CamVid(root, [], mode='test').mode == 'val'
    assert CamVid.CLASSES[3] == 'Car' and CamVid.PALETTE[3] == (64, 0, 128) and CamVid.NUM_CLASSES == 11


def test_segnet_ids_remapped(tmp_path):
    src = make_camvid_segnet(str(tmp_path))
    out = str(tmp_path / 'out')
    assert run_tool('camvid', [src, '-o', out]) == 0
    assert os.path.isfile(os.path.join(out, 'train', '0001TP_006690.png'))
    _, label = CamVid(out, [], mode='val')[0]
    row = label[0]
    assert (row[0], row[20], row[40], row[60]) == (2, 3, 8, 255)  # sky car pole unlabelled


def test_errors(tmp_path, capsys):
    assert run_tool('camvid', [tmp_path]) == 2
    err = capsys.readouterr().err
    assert 'train_labels' in err and 'trainannot' in err and len(err.strip().splitlines()) == 1
    root = make_camvid_color(str(tmp_path))
    with pytest.raises(DataError, match=r"train_trainIds' does not exist; run .*tools/data/camvid.py"):
        CamVid(root, [], mode='train')
    with pytest.raises(DataError, match='mode must be one of'):
        CamVid(root, [], mode='training')
