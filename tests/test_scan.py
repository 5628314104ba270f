"""The dataset scanner (zoo/datasets/scan.py) and the trainer's pre-flight check: every planted
fault is reported with its file name, a clean tree passes, the second scan comes from the cache."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from zoo.datasets import scan
from zoo.datasets.base import Dataset
from zoo.datasets.scan import dataset_problems, inspect_file, label_lut, preflight_check, scan_files
from zoo.utils.errors import DataError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 24, 40


@pytest.fixture(autouse=True)
def scan_cache(tmp_path, monkeypatch):
    folder = tmp_path / 'scan_cache'
    monkeypatch.setenv('ZOO_SCAN_CACHE', str(folder))
    return folder


def write_pair(root, name, num_classes=4, ext='.png', seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    lab = rng.integers(0, num_classes, (H, W), dtype=np.uint8)
    lab[0] = 255
    os.makedirs(os.path.join(root, 'images'), exist_ok=True)
    os.makedirs(os.path.join(root, 'labels'), exist_ok=True)
    img_rel, lab_rel = f'images/{name}{ext}', f'labels/{name}.png'
    assert cv2.imwrite(os.path.join(root, img_rel), img)
    assert cv2.imwrite(os.path.join(root, lab_rel), lab)
    return img_rel, lab_rel


def make_tree(root, names, **kw):
    pairs = [write_pair(root, n, seed=i, **kw) for i, n in enumerate(names)]
    with open(os.path.join(root, 'train.txt'), 'w') as f:
        f.writelines(f'{a} {b}\n' for a, b in pairs)
    return pairs


def dataset(root, **kw):
    kw.setdefault('num_classes', 4)
    return Dataset(str(root), [], train_path='train.txt', **kw)


def truncate(path, keep=0.5):
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep)])


def problems_of(ds, num_workers=0):
    records, _ = scan_files(scan.dataset_tasks(ds), num_workers=num_workers, progress=False)
    return dataset_problems(ds, records)


# -- single files -----------------------------------------------------------------------

def test_clean_tree_has_no_problems_and_records_what_check_dataset_needs(tmp_path):
    make_tree(tmp_path, ['a', 'b', 'c'])
    ds = dataset(tmp_path)
    assert problems_of(ds) == []
    rec = inspect_file(str(tmp_path / 'labels/a.png'), 'label')
    lab = cv2.imread(str(tmp_path / 'labels/a.png'), cv2.IMREAD_UNCHANGED)
    values, counts = np.unique(lab, return_counts=True)
    assert rec['values'] == values.tolist() and rec['counts'] == counts.tolist()
    assert (rec['width'], rec['height'], rec['channels'], rec['dtype']) == (W, H, 1, 'uint8')
    img = inspect_file(str(tmp_path / 'images/a.png'), 'image')
    assert (img['width'], img['height'], img['channels'], img['error']) == (W, H, 3, None)


def test_planted_faults_are_all_reported_with_their_file(tmp_path):
    names = ['ok', 'trunc_jpg', 'trunc_png', 'zero', 'rgb', 'gray16', 'size', 'range', 'palette', 'onebit',
             'jpglabel']
    pairs = make_tree(tmp_path, names)
    p = {n: (str(tmp_path / a), str(tmp_path / b)) for n, (a, b) in zip(names, pairs)}
    # a truncated JPEG: OpenCV decodes it with only a libjpeg warning
    rng = np.random.default_rng(5)
    big = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    jpg = p['trunc_jpg'][0].replace('.png', '.jpg')
    cv2.imwrite(jpg, big)
    truncate(jpg)
    assert cv2.imread(jpg) is not None  # the reason the scanner cannot trust OpenCV here
    os.remove(p['trunc_jpg'][0])
    with open(tmp_path / 'train.txt', 'r+') as f:
        text = f.read().replace('images/trunc_jpg.png', 'images/trunc_jpg.jpg')
        f.seek(0)
        f.write(text)
        f.truncate()
    truncate(p['trunc_png'][0])
    open(p['zero'][0], 'wb').close()
    lab = cv2.imread(p['rgb'][1], cv2.IMREAD_UNCHANGED)
    color = np.stack([lab * 40, lab * 20, lab], -1).astype(np.uint8)
    cv2.imwrite(p['rgb'][1], color)
    cv2.imwrite(p['gray16'][1], cv2.imread(p['gray16'][1], cv2.IMREAD_UNCHANGED).astype(np.uint16))
    cv2.imwrite(p['size'][1], np.zeros((H, W + 2), np.uint8))
    lab = cv2.imread(p['range'][1], cv2.IMREAD_UNCHANGED)
    lab[3, 3], lab[4, 4] = 7, 200
    cv2.imwrite(p['range'][1], lab)
    pal = Image.fromarray(np.zeros((H, W), np.uint8), mode='L').convert('P')
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.save(p['palette'][1])
    Image.fromarray(np.zeros((H, W), np.uint8)).convert('1').save(p['onebit'][1])
    with open(p['jpglabel'][1], 'wb') as f:  # JPEG bytes under a .png name
        f.write(cv2.imencode('.jpg', np.zeros((H, W), np.uint8))[1].tobytes())

    found = problems_of(dataset(tmp_path), num_workers=2)
    expect = {
        'trunc_jpg': 'truncated or corrupt JPEG', 'trunc_png': 'truncated PNG', 'zero': 'is empty (0 bytes)',
        'rgb': 'has 3 channels', 'gray16': '16-bit', 'size': f'is {W + 2}x{H} but its image',
        'range': 'has values [7, 200] outside [0, 3] (ignore index 255)', 'palette': 'palette PNG',
        'onebit': '1-bit PNG', 'jpglabel': 'is a JPEG',
    }
    assert len(found) == len(expect), found
    for name, needle in expect.items():
        hits = [f for f in found if f"/{name}." in f]
        assert len(hits) == 1 and needle in hits[0], (name, found)
        assert '\n' not in hits[0]


def test_png_bit_flip_is_caught_by_the_crc(tmp_path):
    make_tree(tmp_path, ['a'])
    path = tmp_path / 'images/a.png'
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))
    assert 'CRC mismatch' in inspect_file(str(path), 'image')['error']


def test_exif_rotated_jpeg_has_the_size_opencv_gives(tmp_path):
    img = Image.fromarray(np.zeros((H, W, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: OpenCV's imread returns W x H swapped
    path = str(tmp_path / 'r.jpg')
    img.save(path, exif=exif)
    rec = inspect_file(path, 'image')
    assert cv2.imread(path).shape[:2] == (W, H)
    assert (rec['height'], rec['width']) == (W, H)


# -- the dataset's own mapping -------------------------------------------------------

def test_reduce_zero_label_mapping_is_applied(tmp_path):
    make_tree(tmp_path, ['a'], num_classes=5)  # stored 0..4 and 255
    lab = cv2.imread(str(tmp_path / 'labels/a.png'), cv2.IMREAD_UNCHANGED)
    # ADE20K convention: stored 0 -> ignore, v -> v - 1; 4 classes stored as 1..4 are fine
    assert problems_of(dataset(tmp_path, num_classes=4, reduce_zero_label=True)) == []
    # without the mapping, stored 4 is out of range for 4 classes
    assert 'has values [4]' in problems_of(dataset(tmp_path, num_classes=4))[0]
    # 3 classes with the mapping: stored 4 -> 3 is out of range; the message shows both
    msg = problems_of(dataset(tmp_path, num_classes=3, reduce_zero_label=True))[0]
    assert "has values [4] (stored values; after the dataset's mapping: [3]) outside [0, 2]" in msg
    lut = label_lut(dataset(tmp_path, num_classes=4, reduce_zero_label=True))
    assert lut[0] == 255 and lut[1] == 0 and lut[4] == 3 and lut[255] == 255
    assert lab.max() == 255


def test_the_loaders_own_mapping_table_is_used(tmp_path):
    """COCO-Stuff maps stored COCO ids through a table and rejects ids above 182."""
    from zoo.datasets.cocostuff import COCOStuff10k
    ds = COCOStuff10k.__new__(COCOStuff10k)
    from zoo.datasets.prepare.cocostuff import raw_to_train_id_lut
    ds._lut, ds.num_classes, ds.ignore_index, ds.reduce_zero_label = raw_to_train_id_lut(171, 255), 171, 255, False
    lut = label_lut(ds)
    assert lut[0] == 255 and lut[1] == 0 and lut[183] == scan.INVALID
    assert np.array_equal(lut[:183], ds._lut[:183])


# -- cache and parallel scan -----------------------------------------------------------

def test_second_scan_comes_from_the_cache_and_a_changed_file_is_rescanned(tmp_path, monkeypatch, scan_cache):
    make_tree(tmp_path, ['a', 'b'])
    tasks = scan.dataset_tasks(dataset(tmp_path))
    first, stats = scan_files(tasks, progress=False)
    assert stats['cached'] == 0 and stats['files'] == 4 and len(os.listdir(scan_cache)) == 1
    calls = []
    real = scan.inspect_file
    monkeypatch.setattr(scan, 'inspect_file', lambda p, k: calls.append(p) or real(p, k))
    again, stats = scan_files(tasks, progress=False)
    assert stats['cached'] == 4 and calls == [] and again == first
    # a rewritten label (new size/mtime) is read again, and its new fault is seen
    lab = str(tmp_path / 'labels/b.png')
    cv2.imwrite(lab, np.full((H, W), 9, np.uint8))
    st = os.stat(lab)
    os.utime(lab, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    records, stats = scan_files(tasks, progress=False)
    assert stats['cached'] == 3 and calls == [os.path.abspath(lab)]
    assert 'has values [9]' in dataset_problems(dataset(tmp_path), records)[0]


def test_parallel_and_serial_scans_agree(tmp_path):
    make_tree(tmp_path, [f'n{i}' for i in range(6)])
    tasks = scan.dataset_tasks(dataset(tmp_path))
    serial, _ = scan_files(tasks, num_workers=0, use_cache=False, progress=False)
    parallel, _ = scan_files(tasks, num_workers=2, use_cache=False, progress=False)
    assert serial == parallel


def test_preflight_raises_one_line_after_logging_each_problem(tmp_path, caplog):
    make_tree(tmp_path, ['a', 'b', 'c'])
    truncate(str(tmp_path / 'images/b.png'))
    lab = str(tmp_path / 'labels/c.png')
    cv2.imwrite(lab, np.full((H, W), 50, np.uint8))
    with pytest.raises(DataError) as e:
        preflight_check({'train': dataset(tmp_path), 'val': None})
    msg = str(e.value)
    assert '\n' not in msg and '2 problem(s) in 3 train samples' in msg and 'images/b.png' in msg
    assert '--skip_data_check' in msg


def test_class_uniform_wrapper_is_scanned_through(tmp_path):
    from zoo.datasets.class_uniform import ClassUniformDataset
    make_tree(tmp_path, ['a', 'b'])
    wrapped = ClassUniformDataset(dataset(tmp_path))
    assert len(scan.dataset_tasks(wrapped)) == 4
    assert problems_of(wrapped) == []


# -- through tools/train.py ------------------------------------------------------------

TRAIN_CFG = """
batch_size: 2
iters: 2
train_dataset: {{type: Dataset, dataset_root: {root}, train_path: train.txt, num_classes: 4,
  transforms: [{{type: Normalize}}]}}
val_dataset: {{type: Dataset, dataset_root: {root}, val_path: val.txt, num_classes: 4, mode: val,
  transforms: [{{type: Normalize}}]}}
model: {{type: FastSCNN, num_classes: 4}}
loss: {{types: [{{type: CrossEntropyLoss}}], coef: [1.0, 0.4, 0.4]}}
optimizer: {{type: SGD, momentum: 0.9, weight_decay: 4.0e-5}}
lr_scheduler: {{type: PolynomialDecay, learning_rate: 0.01, power: 0.9, end_lr: 0}}
"""


def test_train_stops_before_iteration_one_on_a_bad_val_label(tmp_path, scan_cache):
    root = tmp_path / 'data'
    make_tree(root, ['a', 'b'])
    pair = write_pair(root, 'v', seed=9)
    cv2.imwrite(str(root / pair[1]), np.full((H, W), 77, np.uint8))
    (root / 'val.txt').write_text(f'{pair[0]} {pair[1]}\n')
    cfg = tmp_path / 'cfg.yml'
    cfg.write_text(TRAIN_CFG.format(root=root))
    out = tmp_path / 'out'
    env = dict(os.environ, ZOO_SCAN_CACHE=str(scan_cache))
    cmd = [sys.executable, os.path.join(ROOT, 'tools/train.py'), '--config', str(cfg), '--save_dir', str(out),
           '--device', 'cpu']  # no --do_eval: the val set is checked all the same
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: pre-flight data check: 1 problem(s)') and 'labels/v.png' in err[0]
    assert 'Traceback' not in r.stderr and 'pre-flight data check (val): label' in r.stdout
    assert not (out.exists() and any(d.startswith('iter_') for d in os.listdir(out)))
    # --skip_data_check opts out: training runs (val is not read without --do_eval)
    r = subprocess.run(cmd + ['--skip_data_check', '--iters', '1'], capture_output=True, text=True, env=env,
                       timeout=600)
    assert r.returncode == 0, r.stderr
    assert os.path.isdir(out / 'iter_1')


def test_two_ranks_both_stop_with_the_same_line(tmp_path, scan_cache):
    """Rank 0 scans while rank 1 waits at a barrier, then reads the cache: both exit 2, no traceback."""
    root = tmp_path / 'data'
    make_tree(root, ['a', 'b', 'c', 'd'])
    truncate(str(root / 'images/c.png'))
    (root / 'val.txt').write_text('images/a.png labels/a.png\n')
    cfg = tmp_path / 'cfg.yml'
    cfg.write_text(TRAIN_CFG.format(root=root))
    env = {k: v for k, v in os.environ.items() if k != 'CUDA_VISIBLE_DEVICES'}
    env['ZOO_SCAN_CACHE'] = str(scan_cache)
    log = tmp_path / 'log'
    r = subprocess.run([sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', '2', '--log_dir',
                        str(log), os.path.join(ROOT, 'tools/train.py'), '--config', str(cfg), '--save_dir',
                        str(tmp_path / 'out'), '--device', 'cpu'], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode != 0
    for rank in (0, 1):
        text = (log / f'workerlog.{rank}').read_text()
        assert 'Traceback' not in text, text[-3000:]
        errors = [ln for ln in text.splitlines() if ln.startswith('error: ')]
        assert len(errors) == 1 and 'pre-flight data check: 1 problem(s)' in errors[0] and 'images/c.png' in errors[0]
    assert not any(d.startswith('iter_') for d in os.listdir(tmp_path / 'out')) if (tmp_path / 'out').exists() else True
