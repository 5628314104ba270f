"""Datasets: Cityscapes layout loading, per-sample seeding, the demo generator, and one-line
DataErrors naming the file for every bad input."""
import filecmp
import os

import cv2
import numpy as np
import pytest

from zoo.datasets.base import Dataset
from zoo.datasets.cityscapes import Cityscapes
from zoo.datasets.demo import DemoShapes
from zoo.datasets.meta import DEMO_CLASSES
from zoo.datasets.prepare.demo import class_pixel_counts, generate_demo_dataset, majority_baseline, sample_paths
from zoo.utils.errors import DataError

AUG = [dict(type='RandomRescale', scale=[32, 16], ratio_range=[0.5, 2.0]),
       dict(type='RandomCrop', crop_size=[12, 20]), dict(type='Pad', size=[12, 20]),
       dict(type='RandomHorizontalFlip'), dict(type='PhotoMetricDistortion'), dict(type='Normalize')]


def one_line_error(fn, *needles):
    with pytest.raises(DataError) as e:
        fn()
    msg = str(e.value)
    assert '\n' not in msg
    for n in needles:
        assert n in msg, msg
    return msg


# -- loading and seeding -----------------------------------------------------------

def test_cityscapes_layout_loads_train_val_and_trainval(tiny_cityscapes):
    root = tiny_cityscapes(n_train=3, n_val=2)
    tr = Cityscapes(root, [], mode='train')
    va = Cityscapes(root, [], mode='val')
    assert len(tr) == 3 and len(va) == 2 and len(Cityscapes(root, [], mode='trainval')) == 5
    img, label = tr[0]
    assert img.shape == (3, 16, 32) and img.dtype == np.float32
    assert label.shape == (16, 32) and label.dtype == np.int64 and (label[0] == 255).all()
    # RGB: the file is BGR on disk
    bgr = cv2.imread(tr.file_list[0][0])
    assert np.array_equal(img[0], bgr[..., 2].astype(np.float32))


def test_val_mode_keeps_the_original_label(tiny_cityscapes):
    root = tiny_cityscapes(n_train=1, n_val=1, height=16, width=32)
    va = Cityscapes(root, [dict(type='Resize', target_size=[16, 8]), dict(type='Normalize')], mode='val')
    img, label = va[0]
    assert img.shape == (3, 8, 16) and label.shape == (16, 32)


def test_same_index_same_sample_next_epoch_different(tiny_cityscapes):
    root = tiny_cityscapes(n_train=2, n_val=1)
    ds = Cityscapes(root, AUG, mode='train', seed=7)
    a1, l1 = ds[1]
    a2, l2 = ds[1]
    assert np.array_equal(a1, a2) and np.array_equal(l1, l2)
    # a fresh dataset object (another worker) sees the same augmentation
    a3, _ = Cityscapes(root, AUG, mode='train', seed=7)[1]
    assert np.array_equal(a1, a3)
    # epoch 1 of the same image (index + len) and another seed differ
    b, _ = ds[1 + len(ds)]
    c, _ = Cityscapes(root, AUG, mode='train', seed=8)[1]
    assert not np.array_equal(a1, b) and not np.array_equal(a1, c)


def test_file_list_dataset(tiny_cityscapes, tmp_path):
    root = tiny_cityscapes(n_train=2, n_val=0)
    lst = tmp_path / 'train.txt'
    rel = [os.path.relpath(p, root) for p in sorted(
        os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(root, 'leftImg8bit')) for f in fs)]
    lines = [f'{r} {r.replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png")}'
             for r in rel]
    lst.write_text('\n'.join(lines) + '\n\n')
    ds = Dataset(root, [], num_classes=19, train_path=str(lst))
    assert len(ds) == 2 and ds[0][1].shape == (16, 32)


# -- the demo generator ------------------------------------------------------------

def test_demo_layout_and_dataset(demo_root):
    for split, n in (('train', 4), ('val', 2)):
        for i in range(n):
            img_path, label_path = sample_paths(demo_root, split, i)
            assert os.path.isfile(img_path) and os.path.isfile(label_path)
    tr = DemoShapes(demo_root, [], mode='train')
    va = DemoShapes(demo_root, [], mode='val')
    assert len(tr) == 4 and len(va) == 2 and tr.num_classes == len(DEMO_CLASSES) == 6
    assert len(DemoShapes.PALETTE) == 6
    img, label = va[0]
    assert img.shape == (3, 64, 128)
    vals = set(np.unique(label).tolist())
    assert 255 in vals and 0 in vals and len(vals - {0, 255}) >= 1  # ignore frame, bg, objects
    assert vals <= set(range(8)) | {255}


def test_demo_majority_baseline_is_low(demo_root):
    counts = class_pixel_counts(demo_root, 'train')
    assert counts.argmax() == 0 and (counts > 0).sum() >= 5
    summary = majority_baseline(demo_root)
    assert summary['most_frequent_class'] == 0
    assert abs(sum(summary['val_freq']) - 1) < 1e-9
    assert summary['miou'] <= 0.30


def test_demo_generation_is_deterministic(tmp_path, demo_root):
    a, b, c = (str(tmp_path / n) for n in 'abc')
    generate_demo_dataset(a, num_train=1, num_val=2, height=64, width=128, seed=0)
    generate_demo_dataset(b, num_train=1, num_val=2, height=64, width=128, seed=0)
    generate_demo_dataset(c, num_train=1, num_val=1, height=64, width=128, seed=1)
    for split, i in (('train', 0), ('val', 0), ('val', 1)):
        for pa, pb in zip(sample_paths(a, split, i), sample_paths(b, split, i)):
            assert filecmp.cmp(pa, pb, shallow=False)
    # val images do not depend on how many train images were made (demo_root has 4)
    for pa, pd in zip(sample_paths(a, 'val', 1), sample_paths(demo_root, 'val', 1)):
        assert filecmp.cmp(pa, pd, shallow=False)
    # another seed, other images
    assert not filecmp.cmp(sample_paths(a, 'val', 0)[0], sample_paths(c, 'val', 0)[0], shallow=False)


def test_demo_rejects_tiny_sizes(tmp_path):
    one_line_error(lambda: generate_demo_dataset(str(tmp_path), height=8, width=8), 'height and width')


# -- bad inputs: one line, naming the file -----------------------------------------

def test_missing_dataset_root(tmp_path):
    missing = str(tmp_path / 'nope')
    one_line_error(lambda: Cityscapes(missing, []), missing)
    one_line_error(lambda: Dataset(missing, [], num_classes=2, train_path='x.txt'), missing)


def test_missing_split_folders(tiny_cityscapes):
    root = tiny_cityscapes(n_train=1, n_val=0)
    one_line_error(lambda: Cityscapes(root, [], mode='val'), os.path.join(root, 'leftImg8bit', 'val'))
    os.makedirs(os.path.join(root, 'leftImg8bit', 'val'))
    os.rename(os.path.join(root, 'gtFine', 'train'), os.path.join(root, 'gtFine', 'moved'))
    one_line_error(lambda: Cityscapes(root, [], mode='train'), os.path.join(root, 'gtFine', 'train'))


def test_missing_label_or_image_listed(tiny_cityscapes, tmp_path):
    root = tiny_cityscapes(n_train=2, n_val=0)
    tr = Cityscapes(root, [])
    img0, lab0 = tr.file_list[0]
    os.remove(lab0)
    one_line_error(lambda: Cityscapes(root, []), lab0, 'does not exist')
    lst = tmp_path / 'list.txt'
    lst.write_text('leftImg8bit/train/aachen/ghost.png gtFine/train/aachen/ghost_label.png\n')
    one_line_error(lambda: Dataset(root, [], num_classes=19, train_path=str(lst)), 'ghost.png', 'does not exist')


def test_missing_or_empty_file_list(tiny_cityscapes, tmp_path):
    root = tiny_cityscapes(n_train=1, n_val=0)
    one_line_error(lambda: Dataset(root, [], num_classes=19, train_path=str(tmp_path / 'missing.txt')),
                   'missing.txt', 'does not exist')
    empty = tmp_path / 'empty.txt'
    empty.write_text('\n\n')
    one_line_error(lambda: Dataset(root, [], num_classes=19, train_path=str(empty)), 'empty.txt', 'empty')
    bad = tmp_path / 'bad.txt'
    bad.write_text('a.png b.png c.png\n')
    one_line_error(lambda: Dataset(root, [], num_classes=19, train_path=str(bad)), 'bad.txt:1')
    one_line_error(lambda: Dataset(root, [], num_classes=19), 'train_path')
    binary = tmp_path / 'binary.txt'
    binary.write_bytes(b'\xff\xfe\x00img.png\n')
    one_line_error(lambda: Dataset(root, [], num_classes=19, train_path=str(binary)), 'binary.txt', 'UTF-8')


def test_empty_split_folder(tiny_cityscapes):
    root = tiny_cityscapes(n_train=1, n_val=0)
    os.makedirs(os.path.join(root, 'leftImg8bit', 'val'))
    os.makedirs(os.path.join(root, 'gtFine', 'val'))
    one_line_error(lambda: Cityscapes(root, [], mode='val'), root, 'no *_leftImg8bit.png')


@pytest.mark.parametrize('payload', [b'', b'not a png at all', None])
def test_corrupt_image(tiny_cityscapes, payload):
    root = tiny_cityscapes(n_train=1, n_val=0)
    ds = Cityscapes(root, [])
    img_path = ds.file_list[0][0]
    data = open(img_path, 'rb').read()
    with open(img_path, 'wb') as f:
        f.write(payload if payload is not None else data[:40])  # None: a truncated PNG
    one_line_error(lambda: ds[0], img_path, 'cannot be decoded')


def test_corrupt_and_color_labels(tiny_cityscapes):
    root = tiny_cityscapes(n_train=1, n_val=0)
    ds = Cityscapes(root, [])
    lab_path = ds.file_list[0][1]
    cv2.imwrite(lab_path, np.zeros((16, 32, 3), np.uint8))
    one_line_error(lambda: ds[0], lab_path, '3 channels')
    with open(lab_path, 'wb') as f:
        f.write(b'garbage')
    one_line_error(lambda: ds[0], lab_path, 'cannot be decoded')


def test_label_values_out_of_range(tiny_cityscapes):
    root = tiny_cityscapes(n_train=1, n_val=0)
    ds = Cityscapes(root, [])
    lab_path = ds.file_list[0][1]
    lab = cv2.imread(lab_path, cv2.IMREAD_UNCHANGED)
    lab[3, 3], lab[4, 4] = 19, 254
    cv2.imwrite(lab_path, lab)
    msg = one_line_error(lambda: ds[0], lab_path, '[19, 254]', '[0, 18]')
    assert 'ignore index 255' in msg
    lab[3, 3], lab[4, 4] = 255, 18  # ignore and the last class are fine
    cv2.imwrite(lab_path, lab)
    assert ds[0][1][3, 3] == 255


def test_image_label_size_mismatch(tiny_cityscapes):
    root = tiny_cityscapes(n_train=1, n_val=0)
    ds = Cityscapes(root, [])
    img_path, lab_path = ds.file_list[0]
    cv2.imwrite(lab_path, np.zeros((10, 30), np.uint8))
    one_line_error(lambda: ds[0], lab_path, img_path, '30x10', '32x16')


def test_bad_mode(tiny_cityscapes):
    root = tiny_cityscapes(n_train=1, n_val=0)
    one_line_error(lambda: Cityscapes(root, [], mode='training'), "'training'")


def test_demo_dataset_builds_from_config_and_gives_num_classes(demo_root):
    from zoo.builder import as_config, build_dataset, dataset_num_classes

    cfg = {'train_dataset': dict(type='DemoShapes', dataset_root=demo_root, mode='train',
                                 transforms=[dict(type='RandomPaddingCrop', crop_size=[64, 32]),
                                             dict(type='Normalize')])}
    assert dataset_num_classes(as_config(cfg)) == 6
    img, label = build_dataset(cfg)[0]
    assert img.shape == (3, 32, 64) and label.max() <= 255


def test_demo_regenerated_smaller_leaves_no_stale_samples_and_never_mixes_into_a_dataset(tmp_path):
    root = str(tmp_path / 'demo')
    generate_demo_dataset(root, num_train=3, num_val=2, height=64, width=128, seed=0)
    generate_demo_dataset(root, num_train=2, num_val=1, height=64, width=128, seed=0)
    pngs = sorted(p.name for p in (tmp_path / 'demo').rglob('*.png'))
    assert len(pngs) == 2 * (2 + 1), pngs  # image + label per sample, none left from the first run
    os.remove(os.path.join(root, 'demo_info.json'))  # now it looks like someone's Cityscapes folder
    one_line_error(lambda: generate_demo_dataset(root, num_train=1, num_val=1, height=64, width=128),
                   'no demo_info.json')
    assert len(list((tmp_path / 'demo').rglob('*.png'))) == 6
