"""tools/data/check_dataset.py on the scanner (zoo/datasets/check.py): every planted fault listed with
its file and exit 2; a clean tree prints the class table, suggestions and exits 0."""
import os
import subprocess
import sys

import cv2
import numpy as np

from zoo.datasets.check import median_frequency_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, 'tools/data/check_dataset.py')


def make_tree(root, n=6):
    os.makedirs(os.path.join(root, 'images'))
    os.makedirs(os.path.join(root, 'labels'))
    lines = []
    for i in range(n):
        img = np.full((12, 16, 3), 40 * i, np.uint8)
        lab = np.zeros((12, 16), np.uint8)
        lab[:4] = 1           # class 1 in every image (64 px)
        if i % 3 == 0:
            lab[6:8, :8] = 2  # class 2 in 2 images (16 px)
        lab[-1] = 255
        cv2.imwrite(os.path.join(root, 'images', f'{i}.png'), img)
        cv2.imwrite(os.path.join(root, 'labels', f'{i}.png'), lab)
        lines.append(f'images/{i}.png labels/{i}.png')
    open(os.path.join(root, 'train.txt'), 'w').write('\n'.join(lines[:4]) + '\n')
    open(os.path.join(root, 'val.txt'), 'w').write('\n'.join(lines[4:]) + '\n')
    open(os.path.join(root, 'labels.txt'), 'w').write('background\nbar\nstripe\n')


def run(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, timeout=300)


def test_clean_tree_prints_the_class_table_and_suggestions(tmp_path):
    make_tree(str(tmp_path))
    r = run(str(tmp_path))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert '== train: 4 images, 4 labels; sizes (W x H): 16x12 (4)' in out
    # train: 4 images of 192 px, 16 ignored each; class 1: 64 px x 4, class 2: 16 px x 2
    row1 = next(ln for ln in out.splitlines() if ln.strip().startswith('1  bar'))
    assert '256' in row1 and row1.split()[-1] == '4'
    row2 = next(ln for ln in out.splitlines() if ln.strip().startswith('2  stripe'))
    assert '32' in row2 and row2.split()[-1] == '2'
    assert 'num_classes: 3   ignore_index: 255' in out and 'no problems found' in out
    w = median_frequency_weights([2 * 112 + 2 * 96, 256, 32], [4 * 176, 4 * 176, 2 * 176])
    assert f'weight: {[round(float(x), 4) for x in w]}' in out


def test_unknown_class_count_is_suggested(tmp_path):
    make_tree(str(tmp_path))
    os.remove(tmp_path / 'labels.txt')
    r = run(str(tmp_path))
    assert r.returncode == 0 and 'num_classes: 3' in r.stdout
    # the class table lists the ids seen (0-2), not the 255 placeholder of an unknown count
    ids = [int(ln.split()[0]) for ln in r.stdout.splitlines() if ln.strip() and ln.split()[0].isdigit()]
    assert sorted(set(ids)) == [0, 1, 2], r.stdout


def test_planted_faults_each_listed_and_exit_2(tmp_path):
    make_tree(str(tmp_path), n=6)
    data = open(tmp_path / 'images/1.png', 'rb').read()
    open(tmp_path / 'images/1.png', 'wb').write(data[:len(data) // 2])                       # truncated
    cv2.imwrite(str(tmp_path / 'labels/2.png'), np.zeros((12, 16, 3), np.uint8) + [0, 0, 128])  # RGB label
    cv2.imwrite(str(tmp_path / 'labels/3.png'), np.full((12, 16), 5, np.uint8))               # out of range
    cv2.imwrite(str(tmp_path / 'labels/4.png'), np.zeros((10, 16), np.uint8))                 # size mismatch
    open(tmp_path / 'images/5.png', 'wb').close()                                             # empty
    r = run(str(tmp_path))
    assert r.returncode == 2
    problems = [ln for ln in r.stdout.splitlines() if ln.startswith('problem: ')]
    want = {'images/1.png': 'truncated PNG', 'labels/2.png': 'has 3 channels',
            'labels/3.png': 'has values [5] outside [0, 2]', 'labels/4.png': 'is 16x10 but its image',
            'images/5.png': 'is empty (0 bytes)'}
    assert len(problems) == len(want), problems
    for path, needle in want.items():
        assert any(path in p and needle in p for p in problems), (path, problems)
    assert r.stderr.startswith('error: 5 problem(s) in the dataset') and r.stderr.count('\n') == 1


def test_config_mode_checks_its_datasets(tmp_path):
    make_tree(str(tmp_path / 'd'))
    cfg = tmp_path / 'c.yml'
    cfg.write_text(f"""
_base_: {os.path.join(ROOT, 'configs/_base_/custom.yml')}
train_dataset: {{dataset_root: {tmp_path / 'd'}, num_classes: 3, class_names: [background, bar, stripe]}}
val_dataset: {{dataset_root: {tmp_path / 'd'}, num_classes: 3}}
model: {{type: FastSCNN}}
""")
    r = run('--config', str(cfg))
    assert r.returncode == 0, r.stdout + r.stderr
    assert '== val: 2 images' in r.stdout and '2  stripe' in r.stdout


def test_median_frequency_balancing():
    # class 0: 100 px in images of 400 px (freq 0.25); class 1: 50 px in 100 px (0.5); class 2: 10 in 200 (0.05)
    w = median_frequency_weights([100, 50, 10, 0], [400, 100, 200, 0])
    np.testing.assert_allclose(w, [1.0, 0.5, 5.0, 0.0])
