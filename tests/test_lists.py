"""File lists of a custom dataset (zoo/datasets/lists.py, tools/data/create_dataset_list.py)."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from zoo.datasets.base import Dataset
from zoo.datasets.lists import create_dataset_list, pair_files, split_counts
from zoo.utils.errors import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_folder(root, n=10, img_ext='.jpg', sub=''):
    for i in range(n):
        for d, ext, arr in (('images', img_ext, np.zeros((8, 8, 3), np.uint8)), ('labels', '.png', np.zeros((8, 8), np.uint8))):
            path = os.path.join(root, d, sub, f'im{i:02d}{ext}')
            os.makedirs(os.path.dirname(path), exist_ok=True)
            cv2.imwrite(path, arr)


def read(path):
    return [ln.split() for ln in open(path).read().splitlines()]


def test_split_as_asked_disjoint_and_reproducible(tmp_path):
    make_folder(str(tmp_path), n=10)
    make_folder(str(tmp_path), n=3, img_ext='.png', sub='night')  # sub-folders are kept
    written, orphans = create_dataset_list(str(tmp_path), split=(0.6, 0.2, 0.2), seed=3, class_names=['bg', 'fg'])
    assert written == {'train.txt': 8, 'val.txt': 3, 'test.txt': 2, 'labels.txt': 2} and orphans == []
    lists = {n: read(tmp_path / n) for n in ('train.txt', 'val.txt', 'test.txt')}
    every = [tuple(r) for rows in lists.values() for r in rows]
    assert len(every) == len(set(every)) == 13
    for img, lab in every:
        assert os.path.isfile(tmp_path / img) and os.path.isfile(tmp_path / lab)
        assert os.path.splitext(img)[0].replace('images', 'labels', 1) == os.path.splitext(lab)[0]
    assert ('images/night/im00.png', 'labels/night/im00.png') in every
    # the same seed gives the same lists; another seed another train set
    create_dataset_list(str(tmp_path), split=(0.6, 0.2, 0.2), seed=3)
    assert read(tmp_path / 'train.txt') == lists['train.txt']
    create_dataset_list(str(tmp_path), split=(0.6, 0.2, 0.2), seed=4)
    assert read(tmp_path / 'train.txt') != lists['train.txt']
    # the generic Dataset reads the lists
    ds = Dataset(str(tmp_path), [], num_classes=2, train_path='train.txt')
    assert len(ds) == 8 and ds.class_names == ['0', '1']
    assert (tmp_path / 'labels.txt').read_text().split() == ['bg', 'fg']


def test_suffixes_unlabeled_and_orphans(tmp_path):
    for stem in ('a', 'b', 'c'):
        os.makedirs(tmp_path / 'img', exist_ok=True)
        cv2.imwrite(str(tmp_path / 'img' / f'{stem}_leftImg8bit.png'), np.zeros((4, 4, 3), np.uint8))
    os.makedirs(tmp_path / 'gt')
    for stem in ('a', 'b', 'z'):
        cv2.imwrite(str(tmp_path / 'gt' / f'{stem}_gtFine_labelTrainIds.png'), np.zeros((4, 4), np.uint8))
    pairs, unlabeled, orphans = pair_files(str(tmp_path), 'img', 'gt', ('_leftImg8bit.png',),
                                           '_gtFine_labelTrainIds.png')
    assert pairs == [('img/a_leftImg8bit.png', 'gt/a_gtFine_labelTrainIds.png'),
                     ('img/b_leftImg8bit.png', 'gt/b_gtFine_labelTrainIds.png')]
    assert unlabeled == ['img/c_leftImg8bit.png'] and orphans == ['gt/z_gtFine_labelTrainIds.png']
    written, _ = create_dataset_list(str(tmp_path), 'img', 'gt', (1, 1), 0, ('_leftImg8bit.png',),
                                     '_gtFine_labelTrainIds.png')
    assert written == {'train.txt': 1, 'val.txt': 1, 'unlabeled.txt': 1}
    assert read(tmp_path / 'unlabeled.txt') == [['img/c_leftImg8bit.png']]


def test_split_counts():
    assert split_counts(10, [0.8, 0.2]) == [8, 2]
    assert split_counts(3, [0.9, 0.1]) == [2, 1]  # val never empty when asked for
    assert split_counts(7, [1, 1, 1]) in ([3, 2, 2], [2, 3, 2], [2, 2, 3])
    with pytest.raises(DataError):
        split_counts(5, [0.5, -0.5])


def test_cli_errors_are_one_line(tmp_path):
    tool = [sys.executable, os.path.join(ROOT, 'tools/data/create_dataset_list.py'), str(tmp_path)]
    r = subprocess.run(tool, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and "image folder" in r.stderr
    make_folder(str(tmp_path), n=4)
    r = subprocess.run(tool + ['--split', '0.5', '0.5'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and 'train.txt: 2 line(s)' in r.stdout
