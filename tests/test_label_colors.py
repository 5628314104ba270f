"""Colour labels <-> ids (zoo/datasets/label_colors.py, tools/data/pseudo_color2gray.py, gray2pseudo_color.py)."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from zoo.datasets.label_colors import label_to_ids
from zoo.datasets.meta import CITYSCAPES_PALETTE, voc_palette
from zoo.utils.errors import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ids():
    a = np.zeros((10, 12), np.uint8)
    a[2:6, 3:9] = 3
    a[7:, :4] = 18
    a[0] = 255
    return a


def test_palette_png_keeps_its_indices(tmp_path):
    im = Image.fromarray(ids()).convert('P')
    im.putpalette(voc_palette(256).reshape(-1).tolist())
    im.save(tmp_path / 'p.png')
    assert cv2.imread(str(tmp_path / 'p.png'), cv2.IMREAD_UNCHANGED).ndim == 3  # why it needs converting
    out, unknown, how = label_to_ids(str(tmp_path / 'p.png'))
    assert np.array_equal(out, ids()) and unknown == 0 and how == 'palette indices'


def test_colour_mask_through_the_palette_and_unknown_colours(tmp_path):
    pal = np.asarray(CITYSCAPES_PALETTE, np.uint8)
    a = ids()
    rgb = np.zeros(a.shape + (3,), np.uint8)
    rgb[a != 255] = pal[a[a != 255]]
    rgb[0] = (1, 2, 3)  # not a class colour
    cv2.imwrite(str(tmp_path / 'c.png'), rgb[..., ::-1])
    out, unknown, how = label_to_ids(str(tmp_path / 'c.png'), CITYSCAPES_PALETTE)
    assert np.array_equal(out, a) and unknown == 12 and how == 'colours'
    with pytest.raises(DataError, match='colour mask'):
        label_to_ids(str(tmp_path / 'c.png'))


def test_equal_channels_and_round_trip_through_both_tools(tmp_path):
    a = ids()
    cv2.imwrite(str(tmp_path / 'g.png'), np.stack([a] * 3, -1))
    assert np.array_equal(label_to_ids(str(tmp_path / 'g.png'))[0], a)
    cv2.imwrite(str(tmp_path / 'gray.png'), a)
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'tools/data/gray2pseudo_color.py'), str(tmp_path / 'gray.png'),
                        str(tmp_path / 'pc')], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / 'pc/gray.png').mode == 'P'
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'tools/data/pseudo_color2gray.py'), str(tmp_path / 'pc'),
                        str(tmp_path / 'back')], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert np.array_equal(cv2.imread(str(tmp_path / 'back/gray.png'), cv2.IMREAD_UNCHANGED), a)
