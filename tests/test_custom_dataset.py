"""Your own data, end to end through the command lines (docs/custom_dataset.md):

generated demo images annotated as labelme JSON (polygons traced from the generator's masks)
-> tools/data/labelme2seg.py -> tools/data/create_dataset_list.py -> tools/data/check_dataset.py
-> tools/train.py (the Fast-SCNN custom config, tiny crops) -> tools/val.py -> tools/export.py
-> deploy/python/infer.py, asserting each output: labels equal to the generator's masks away from
polygon edges, lists split as asked, a model that beats the most-frequent-class baseline, and
exported predictions that score the same.
"""
import json
import os
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from zoo.datasets.label_colors import label_to_ids
from zoo.datasets.meta import DEMO_CLASSES
from zoo.datasets.prepare.demo import make_sample

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_IMAGES, H, W = 32, 64, 128
ITERS = 100


def tool(*args, timeout=900):
    t = time.perf_counter()
    r = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=timeout,
                       env=dict(os.environ, CUDA_VISIBLE_DEVICES=''))
    assert r.returncode == 0, f'{args[0]} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}'
    print(f'{os.path.basename(args[0])}: {time.perf_counter() - t:.1f} s')  # the stage times (pytest -s)
    return r.stdout


def mask_to_shapes(label):
    """labelme polygons covering ``label`` (one per connected region of each value, traced by
    OpenCV), larger regions first so that what lies inside a region is drawn over it."""
    names = {v: n for v, n in enumerate(('_background_',) + DEMO_CLASSES[1:])}
    names[255] = '__ignore__'
    shapes = []
    for value in np.unique(label):
        contours, _ = cv2.findContours((label == value).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        for c in contours:
            if len(c) < 3:
                continue  # a one- or two-pixel speck: no polygon (what lies around covers it)
            pts = c[:, 0, :].astype(float).tolist()
            shapes.append((cv2.contourArea(c), {'label': names[int(value)], 'points': pts, 'shape_type': 'polygon',
                                                'group_id': None, 'flags': {}}))
    return [s for _, s in sorted(shapes, key=lambda t: -t[0])]


@pytest.fixture(scope='module')
def annotated(tmp_path_factory):
    """A folder of demo images with labelme JSON beside them, and the generator's masks."""
    root = tmp_path_factory.mktemp('labelme')
    masks = {}
    for i in range(N_IMAGES):
        img, label = make_sample(np.random.default_rng([5, i]), H, W)
        name = f'img{i:03d}'
        cv2.imwrite(str(root / f'{name}.png'), img[:, :, ::-1])
        ann = {'version': '5.5.0', 'flags': {}, 'shapes': mask_to_shapes(label), 'imagePath': f'{name}.png',
               'imageData': None, 'imageHeight': H, 'imageWidth': W}
        (root / f'{name}.json').write_text(json.dumps(ann))
        masks[name] = label
    (root / 'labels.txt').write_text('\n'.join(('__ignore__', '_background_') + DEMO_CLASSES[1:]) + '\n')
    return root, masks


def miou(preds, labels, n):
    conf = np.zeros((n, n), np.int64)
    for p, t in zip(preds, labels):
        keep = t != 255
        np.add.at(conf, (t[keep].astype(int), p[keep].astype(int)), 1)
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    present = conf.sum(1) > 0
    return float((inter[present] / np.maximum(union[present], 1)).mean())


def test_labelme_to_trained_exported_model(annotated, tmp_path):
    src, masks = annotated
    data = tmp_path / 'data'
    # 1. labelme -> single-channel ids, equal to the generator's masks away from region edges
    out = tool('tools/data/labelme2seg.py', str(src), str(data), '--labels', str(src / 'labels.txt'), '--nproc', '2')
    assert f'converted {N_IMAGES} annotation(s)' in out
    agree = total = 0
    for name, mask in masks.items():
        lab = cv2.imread(str(data / 'labels' / f'{name}.png'), cv2.IMREAD_UNCHANGED)
        assert lab.shape == mask.shape and lab.dtype == np.uint8
        k = np.ones((3, 3), np.uint8)
        uniform = cv2.erode(mask, k) == cv2.dilate(mask, k)  # the 3x3 neighbourhood is one value
        np.testing.assert_array_equal(lab[uniform], mask[uniform], err_msg=name)
        agree += int((lab == mask).sum())
        total += mask.size
    assert agree / total > 0.97, agree / total
    assert (data / 'labels.txt').read_text().split() == list(('_background_',) + DEMO_CLASSES[1:])

    # 2. lists: 3/4 train, 1/4 val, disjoint, every image once
    tool('tools/data/create_dataset_list.py', str(data), '--split', '0.75', '0.25', '--seed', '1')
    rows = {n: [ln.split() for ln in (data / n).read_text().splitlines()] for n in ('train.txt', 'val.txt')}
    assert len(rows['train.txt']) == 24 and len(rows['val.txt']) == 8
    used = sorted(r[0] for rs in rows.values() for r in rs)
    assert used == sorted(f'images/{n}.png' for n in masks)

    # 3. the check passes and shows the class names
    out = tool('tools/data/check_dataset.py', str(data), '--num_workers', '2')
    assert 'no problems found' in out and 'num_classes: 6' in out and ' disc ' in out

    # 4. train the custom config (tiny crops), 5. evaluate, 6. export, 7. infer
    names = list(('background',) + DEMO_CLASSES[1:])
    ds = {'dataset_root': str(data), 'num_classes': 6, 'class_names': names}
    norm = {'type': 'Normalize', 'mean': [123.675, 116.28, 103.53], 'std': [58.395, 57.12, 57.375]}
    cfg = {'_base_': os.path.join(REPO, 'configs/fast_scnn/fast_scnn_custom_512x512_10k.yml'),
           'train_dataset': dict(ds, transforms=[
               {'type': 'RandomRescale', 'scale': [W, H], 'ratio_range': [0.75, 1.5]},
               {'type': 'RandomCrop', 'crop_size': [H, W], 'cat_max_ratio': 0.75},
               {'type': 'RandomHorizontalFlip', 'prob': 0.5}, norm, {'type': 'Pad', 'size': [H, W]}]),
           'val_dataset': dict(ds, transforms=[norm]),
           'lr_scheduler': {'learning_rate': 0.12, 'warmup_iters': 10}}
    cfg_path = tmp_path / 'my_data.yml'
    cfg_path.write_text(json.dumps(cfg))  # JSON is YAML
    save = tmp_path / 'out'
    tool('tools/train.py', '--config', str(cfg_path), '--save_dir', str(save), '--iters', str(ITERS),
         '--batch_size', '4', '--save_interval', str(ITERS), '--device', 'cpu', '--seed', '0')
    weights = save / f'iter_{ITERS}' / 'model.pdparams'
    out = tool('tools/val.py', '--config', str(cfg_path), '--model_path', str(weights), '--device', 'cpu',
               '--save_dir', str(tmp_path / 'val'))
    report = json.loads((tmp_path / 'val' / 'metrics.json').read_text())
    val_miou = report['summary']['mIoU']
    assert [r['class'] for r in report['per_class']] == names  # the config's class names
    assert 'disc' in out and 'rectangle' in out                # in the printed table too
    train_labels = [cv2.imread(str(data / r[1]), cv2.IMREAD_UNCHANGED) for r in rows['train.txt']]
    val_labels = [cv2.imread(str(data / r[1]), cv2.IMREAD_UNCHANGED) for r in rows['val.txt']]
    counts = np.bincount(np.concatenate([t[t != 255] for t in train_labels]), minlength=6)
    baseline = miou([np.full_like(t, counts.argmax()) for t in val_labels], val_labels, 6)
    print(f'val mIoU {val_miou:.4f}; always predicting the most frequent class: {baseline:.4f}')
    assert val_miou > baseline + 0.05, (val_miou, baseline)

    export = tmp_path / 'export'
    tool('tools/export.py', '--config', str(cfg_path), '--model_path', str(weights), '--save_dir', str(export))
    assert (export / 'deploy.yaml').is_file()
    val_dir = tmp_path / 'val_images'
    val_dir.mkdir()
    for r in rows['val.txt']:
        os.link(data / r[0], val_dir / os.path.basename(r[0]))
    pred_dir = tmp_path / 'infer'
    tool('deploy/python/infer.py', '--config', str(export / 'deploy.yaml'), '--image_path', str(val_dir),
         '--save_dir', str(pred_dir))
    read = [label_to_ids(str(pred_dir / os.path.basename(r[0]))) for r in rows['val.txt']]
    assert {how for _, _, how in read} == {'palette indices'}  # infer.py writes the ids as a palette PNG
    preds = [ids for ids, _, _ in read]
    assert all(p.shape == (H, W) and p.max() < 6 for p in preds)
    assert abs(miou(preds, val_labels, 6) - val_miou) < 0.01
