"""labelme JSON -> class-id PNGs (zoo/datasets/labelme.py, tools/data/labelme2seg.py), checked
against the masks labelme's own ``shapes_to_label`` produced on the same hand-made shapes
(tests/manifests/labelme_rules.json, written by tests/manifests/labelme_rules.py)."""
import base64
import json
import os
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest

from zoo.datasets.labelme import class_ids_from_list, convert_folder, read_class_list, shapes_to_label
from zoo.utils.errors import DataError

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MANIFEST = json.load(open(os.path.join(HERE, 'manifests', 'labelme_rules.json')))
H, W = MANIFEST['height'], MANIFEST['width']


def manifest_class_ids(tmp_path):
    labels = tmp_path / 'labels.txt'
    labels.write_text('\n'.join(MANIFEST['labels_txt']) + '\n')
    names, has_ignore = read_class_list(str(labels))
    assert names == ['_background_', 'cat', 'dog', 'tree'] and has_ignore
    return class_ids_from_list(names, has_ignore, ignore_index=255)


@pytest.mark.parametrize('case', sorted(k for k, v in MANIFEST['cases'].items() if 'error' not in v))
def test_masks_equal_labelmes_own(case, tmp_path):
    entry = MANIFEST['cases'][case]
    ref = np.frombuffer(zlib.decompress(base64.b64decode(entry['label_zlib_b64'])), np.uint8).reshape(H, W)
    ours = shapes_to_label(entry['shapes'], H, W, manifest_class_ids(tmp_path), ignore_index=255)
    assert ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, ref)


def test_label_not_in_the_class_list_is_one_clear_error(tmp_path):
    entry = MANIFEST['cases']['unknown_label']
    assert 'horse' in entry['error']  # labelme refuses it too
    with pytest.raises(DataError) as e:
        shapes_to_label(entry['shapes'], H, W, manifest_class_ids(tmp_path), where='a.json')
    msg = str(e.value)
    assert "'horse' not in the class list (_background_, cat, dog, tree)" in msg and 'a.json' in msg
    assert '\n' not in msg


def _write_json(path, shapes, image_path=None, image_bytes=None, h=H, w=W):
    ann = {'version': '5.5.0', 'flags': {}, 'shapes': shapes, 'imagePath': image_path,
           'imageData': base64.b64encode(image_bytes).decode('ascii') if image_bytes else None,
           'imageHeight': h, 'imageWidth': w}
    path.write_text(json.dumps(ann))


def test_image_data_or_image_path_and_the_output_tree(tmp_path):
    src = tmp_path / 'annotated'
    (src / 'photos').mkdir(parents=True)
    img = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    cv2.imwrite(str(src / 'photos' / 'a.jpg'), img)
    png = cv2.imencode('.png', img)[1].tobytes()
    shapes = MANIFEST['cases']['overlap_later_on_top']['shapes']
    _write_json(src / 'a.json', shapes, image_path='photos\\a.jpg')         # Windows-style imagePath
    _write_json(src / 'b.json', shapes, image_path='gone/b.png', image_bytes=png)  # imageData wins
    out = tmp_path / 'out'
    from functools import partial

    from zoo.engine.visual import get_palette, save_palette_png
    pairs = convert_folder(str(src), str(out), ['_background_', 'cat', 'dog', 'tree'],
                           preview=partial(save_palette_png, palette=get_palette(4)))
    assert sorted(os.path.relpath(p, out) for pair in pairs for p in pair) == [
        'images/a.jpg', 'images/b.png', 'labels/a.png', 'labels/b.png']
    assert (out / 'images' / 'a.jpg').read_bytes() == (src / 'photos' / 'a.jpg').read_bytes()
    assert (out / 'images' / 'b.png').read_bytes() == png
    ref = np.frombuffer(zlib.decompress(base64.b64decode(
        MANIFEST['cases']['overlap_later_on_top']['label_zlib_b64'])), np.uint8).reshape(H, W)
    for stem in 'ab':
        lab = cv2.imread(str(out / 'labels' / f'{stem}.png'), cv2.IMREAD_UNCHANGED)
        assert lab.ndim == 2 and lab.dtype == np.uint8  # what the training loader reads
        np.testing.assert_array_equal(lab, ref)
        from PIL import Image
        preview = Image.open(out / 'pseudo_color' / f'{stem}.png')
        assert preview.mode == 'P' and np.array_equal(np.asarray(preview), ref)
    assert (out / 'labels.txt').read_text().split() == ['_background_', 'cat', 'dog', 'tree']


def test_declared_size_must_match_and_missing_image_is_named(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    cv2.imwrite(str(src / 'a.png'), np.zeros((H, W, 3), np.uint8))
    _write_json(src / 'a.json', [], image_path='a.png', h=H + 1)
    with pytest.raises(DataError, match=r"imageHeight is 41 but the image is 56x40"):
        convert_folder(str(src), str(tmp_path / 'o'), ['bg'])
    _write_json(src / 'a.json', [], image_path='missing.png')
    with pytest.raises(DataError, match=r"missing.png.*does not exist"):
        convert_folder(str(src), str(tmp_path / 'o'), ['bg'])


def test_labelme2seg_cli(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    cv2.imwrite(str(src / 'a.png'), np.zeros((H, W, 3), np.uint8))
    _write_json(src / 'a.json', MANIFEST['cases']['unknown_label']['shapes'], image_path='a.png')
    (tmp_path / 'labels.txt').write_text('__ignore__\n_background_\ncat\n')
    tool = [sys.executable, os.path.join(ROOT, 'tools/data/labelme2seg.py'), str(src), str(tmp_path / 'out'),
            '--labels', str(tmp_path / 'labels.txt')]
    r = subprocess.run(tool, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and "'horse' not in the class list" in r.stderr
    _write_json(src / 'a.json', MANIFEST['cases']['polygon']['shapes'], image_path='a.png')
    r = subprocess.run(tool, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert 'converted 1 annotation(s)' in r.stdout
    assert cv2.imread(str(tmp_path / 'out/labels/a.png'), cv2.IMREAD_UNCHANGED).max() == 1
