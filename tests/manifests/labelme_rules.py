"""Reference label masks from labelme's own conversion code, for tests/test_labelme.py.

Run in a scratch environment with numpy and Pillow (the project's Pillow version) and labelme's
``labelme/_utils/shape.py`` from a checkout (the module needs only numpy and Pillow, so it is
loaded by file, without labelme's Qt application), NOT part of ``make test``:

    python -m venv /tmp/lm && /tmp/lm/bin/pip install numpy pillow==<ours>
    git -C <labelme checkout> show HEAD:labelme/_utils/shape.py > /tmp/labelme_shape.py
    /tmp/lm/bin/python tests/manifests/labelme_rules.py /tmp/labelme_shape.py <labelme commit>

For each hand-made case (the shapes of one labelme JSON) it calls labelme's
``shapes_to_label(img_shape, shapes, label_name_to_value)`` with the class ids that
``examples/semantic_segmentation/labelme2voc.py`` derives from a ``labels.txt``
(``__ignore__`` -> -1, ``_background_`` -> 0, then 1, 2, ...) and stores the class mask as
labelme2voc saves it (``astype(uint8)``: -1 becomes 255), zlib-compressed and base64-encoded, in
``labelme_rules.json`` beside this file. A label outside the list is recorded as labelme's error.
"""
import base64
import datetime
import importlib.util
import io
import json
import os
import platform
import sys
import zlib

import numpy as np
import PIL
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'labelme_rules.json')
H, W = 40, 56
LABELS = ['__ignore__', '_background_', 'cat', 'dog', 'tree']


def _mask_b64(mask):
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8)).save(buf, format='PNG')
    return base64.b64encode(buf.getvalue()).decode('ascii')


def cases():
    patch = np.zeros((6, 9), bool)
    patch[1:5, 2:8] = True
    patch[2, 4] = False
    return {
        'polygon': [dict(label='cat', shape_type='polygon',
                         points=[[3.2, 4.7], [30.5, 2.1], [41.9, 25.3], [12.4, 33.8], [5.0, 20.0]])],
        'polygon_no_shape_type': [dict(label='dog', points=[[10, 10], [40, 12], [20, 35]])],
        'rectangle_reversed_corners': [dict(label='dog', shape_type='rectangle', points=[[44.6, 30.2], [7.3, 5.8]])],
        'circle': [dict(label='tree', shape_type='circle', points=[[27.5, 19.25], [27.5, 32.0]])],
        'overlap_later_on_top': [
            dict(label='cat', shape_type='rectangle', points=[[0, 0], [40, 30]]),
            dict(label='dog', shape_type='polygon', points=[[20, 5], [55, 10], [50, 39], [15, 35]]),
            dict(label='tree', shape_type='circle', points=[[30, 20], [36, 20]]),
            dict(label='_background_', shape_type='polygon', points=[[2, 2], [10, 2], [6, 9]]),
        ],
        'ignore_region': [
            dict(label='cat', shape_type='polygon', points=[[0, 0], [55, 0], [55, 39], [0, 39]]),
            dict(label='__ignore__', shape_type='rectangle', points=[[10, 10], [20, 25]]),
        ],
        'partly_outside_the_image': [dict(label='tree', shape_type='circle', points=[[50, 35], [50, 50]]),
                                     dict(label='cat', shape_type='polygon', points=[[-10, -5], [20, -3], [8, 12]])],
        'line_linestrip_point': [
            dict(label='cat', shape_type='line', points=[[3, 3], [50, 30]]),
            dict(label='dog', shape_type='linestrip', points=[[5, 35], [25, 20], [45, 36]]),
            dict(label='tree', shape_type='point', points=[[40, 8]]),
        ],
        'oriented_rectangle': [dict(label='dog', shape_type='oriented_rectangle',
                                    points=[[10, 20], [25, 5], [45, 25], [30, 40]])],
        'mask': [dict(label='tree', shape_type='mask', points=[[20, 12], [28, 17]], mask=_mask_b64(patch))],
        'unknown_label': [dict(label='cat', shape_type='polygon', points=[[1, 1], [9, 1], [5, 8]]),
                          dict(label='horse', shape_type='polygon', points=[[1, 1], [9, 1], [5, 8]])],
    }


def _load(path):
    spec = importlib.util.spec_from_file_location('labelme_shape', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(shape_py, commit):
    ref = _load(shape_py)
    class_ids = {name: i - 1 for i, name in enumerate(LABELS)}  # labelme2voc: the first line is -1
    out = {'height': H, 'width': W, 'labels_txt': LABELS, 'cases': {}, 'provenance': {
        'reference': f'wkentaro/labelme@{commit} labelme/_utils/shape.py shapes_to_label',
        'class_ids': 'examples/semantic_segmentation/labelme2voc.py: line index - 1 (__ignore__ = -1)',
        'saved_as': 'astype(uint8) as labelme2voc.py before lblsave (-1 -> 255)',
        'python': platform.python_version(), 'numpy': np.__version__, 'pillow': PIL.__version__,
        'date': datetime.date.today().isoformat(), 'script': 'tests/manifests/labelme_rules.py'}}
    for name, shapes in cases().items():
        entry = {'shapes': shapes}
        ref_shapes = []
        for s in shapes:
            s = dict(s, group_id=None)
            if 'mask' in s:
                s['mask'] = np.asarray(Image.open(io.BytesIO(base64.b64decode(s['mask'])))).astype(bool)
            ref_shapes.append(s)
        try:
            cls, _ = ref.shapes_to_label((H, W), ref_shapes, class_ids)
        except (ValueError, KeyError) as e:
            entry['error'] = f'{type(e).__name__}: {e}'
        else:
            entry['label_zlib_b64'] = base64.b64encode(zlib.compress(cls.astype(np.uint8).tobytes())).decode('ascii')
            entry['values'] = sorted(int(v) for v in np.unique(cls.astype(np.uint8)))
        out['cases'][name] = entry
    with open(OUT, 'w') as f:
        json.dump(out, f, indent=1)
    print(f'wrote {OUT}: {len(out["cases"])} cases')


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
