"""ADE20K: official tree, reduce_zero_label, layout and range errors."""
import os

import numpy as np
import pytest

from fixtures_data import ade_label, make_ade20k, run_tool, write_gray
from zoo.datasets.ade20k import ADE20K
from zoo.utils.errors import DataError


def test_loader_reduces_zero_label(tmp_path, capsys):
    root = make_ade20k(str(tmp_path))
    assert run_tool('ade20k', [root]) == 0
    assert 'training 2, validation 1' in capsys.readouterr().out
    ds = ADE20K(root, transforms=[], mode='train')
    assert len(ds) == 2 and len(ADE20K(root, [], mode='val')) == 1
    _, label = ds[0]
    stored = ade_label()
    assert (label[stored == 0] == 255).all()     # ADE 0 ("other") -> ignore
    assert (label[stored == 1] == 0).all()       # ADE 1 (wall) -> 0
    assert label[-1, -1] == 149                  # ADE 150 -> 149
    assert len(ADE20K.CLASSES) == len(ADE20K.PALETTE) == 150 and ADE20K.CLASSES[0] == 'wall'


def test_value_above_150_names_the_file(tmp_path):
    root = make_ade20k(str(tmp_path))
    bad = os.path.join(root, 'annotations', 'training', 'ADE_train_00000002.png')
    write_gray(bad, np.full((48, 64), 151, np.uint8))
    ds = ADE20K(root, [], mode='train')
    with pytest.raises(DataError, match=r'ADE_train_00000002\.png.*\[150\] outside \[0, 149\]'):
        ds[1]
    with pytest.raises(DataError, match=r'ADE_train_00000002\.png'):
        run_tool_raise(root)


def run_tool_raise(root):
    from zoo.datasets.prepare.ade20k import prepare_ade20k
    prepare_ade20k(root)


def test_wrong_layout_one_line(tmp_path):
    root = make_ade20k(str(tmp_path))
    os.rename(os.path.join(root, 'annotations'), os.path.join(root, 'labels'))
    with pytest.raises(DataError) as e:
        ADE20K(root, [], mode='train')
    msg = str(e.value)
    assert "annotations/training' does not exist" in msg and 'expected <root>/images/{training,validation}' in msg
    assert '\n' not in msg
    with pytest.raises(DataError, match='mode must be train or val'):
        ADE20K(root, [], mode='test')
