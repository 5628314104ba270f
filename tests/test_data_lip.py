"""LIP: official tree, a doubled annotation folder, id lists, left/right swap under flip."""
import os

import numpy as np
import pytest

from fixtures_data import lip_label, make_lip, run_tool, write_gray
from zoo.datasets.lip import LIP
from zoo.utils.errors import DataError
from zoo.utils.registry import TRANSFORMS


def test_prepare_flattens_doubled_folder_and_writes_id_lists(tmp_path):
    root = make_lip(str(tmp_path), doubled=True, with_id_lists=False)
    assert run_tool('lip', [root]) == 0
    assert os.path.isdir(os.path.join(root, 'TrainVal_parsing_annotations', 'train_segmentations'))
    ds = LIP(root, transforms=[], mode='train')
    assert len(ds) == 2 and len(LIP(root, [], mode='val')) == 1
    _, label = ds[0]
    np.testing.assert_array_equal(label, lip_label())
    assert LIP.CLASSES[14] == 'Left-arm' and LIP.CLASSES[15] == 'Right-arm' and len(LIP.PALETTE) == 20


def test_prepare_renames_mirror_annotation_folders(tmp_path):
    root = make_lip(str(tmp_path), mirror_names=True)
    with pytest.raises(DataError, match=r"train_segmentations' does not exist"):
        LIP(root, [], mode='train')
    assert run_tool('lip', [root]) == 0
    _, label = LIP(root, [], mode='val')[0]
    np.testing.assert_array_equal(label, lip_label())


def test_flip_swaps_left_and_right(tmp_path):
    if 'RandomHorizontalFlip' not in TRANSFORMS:
        pytest.skip('zoo/datasets/transforms.py not present')
    root = make_lip(str(tmp_path))
    flip = {'type': 'RandomHorizontalFlip', 'prob': 1.0, 'swap_pairs': [list(p) for p in LIP.FLIP_PAIRS]}
    _, label = LIP(root, transforms=[flip], mode='train')[0]
    # left arm at the left edge -> right arm at the right edge; right leg -> left leg on the left
    assert (label[10:20, 56:64] == 15).all() and not (label == 14).any()
    assert (label[10:20, 0:8] == 16).all() and not (label == 17).any()
    assert (label[30:40, 34:44] == 13).all()   # face is not a left/right class


def test_errors_name_file_and_tree(tmp_path):
    root = make_lip(str(tmp_path))
    bad = os.path.join(root, 'TrainVal_parsing_annotations', 'val_segmentations', '100_val0.png')
    write_gray(bad, np.full((48, 64), 20, np.uint8))
    with pytest.raises(DataError, match=r'100_val0\.png.*\[20\] outside \[0, 19\]'):
        run_prepare(root)
    with pytest.raises(DataError, match=r'100_val0\.png.*\[20\] outside \[0, 19\]'):
        LIP(root, [], mode='val')[0]
    os.rename(os.path.join(root, 'TrainVal_images'), os.path.join(root, 'images'))
    with pytest.raises(DataError) as e:
        LIP(root, [], mode='train')
    assert "TrainVal_images/train_images' does not exist; expected <root>/TrainVal_images/" in str(e.value)


def run_prepare(root):
    from zoo.datasets.prepare.lip import prepare_lip
    prepare_lip(root)
