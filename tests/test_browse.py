"""tools/data/browse_dataset.py (zoo/engine/browse.py): input | coloured label | legend panels of
samples after the train transforms, in the config's class colours."""
import json
import os
import subprocess
import sys

import cv2
import numpy as np

from zoo.engine.browse import LEGEND_WIDTH

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PALETTE = [[10, 20, 30], [200, 0, 0], [0, 200, 0]]


def test_panels_show_the_transformed_sample_in_the_configs_colours(tmp_path):
    root = tmp_path / 'd'
    (root / 'images').mkdir(parents=True)
    (root / 'labels').mkdir()
    lines = []
    for i in range(3):
        img = np.full((20, 30, 3), 60 * i, np.uint8)
        lab = np.zeros((20, 30), np.uint8)
        lab[5:15, 5:20] = 1 + i % 2
        lab[0] = 255
        cv2.imwrite(str(root / 'images' / f'{i}.png'), img)
        cv2.imwrite(str(root / 'labels' / f'{i}.png'), lab)
        lines.append(f'images/{i}.png labels/{i}.png')
    (root / 'train.txt').write_text('\n'.join(lines) + '\n')
    ds = {'type': 'Dataset', 'dataset_root': str(root), 'train_path': 'train.txt', 'num_classes': 3,
          'class_names': ['background', 'crack', 'rust'], 'palette': PALETTE,
          'transforms': [{'type': 'RandomHorizontalFlip', 'prob': 1.0}, {'type': 'Normalize'}]}
    cfg = tmp_path / 'c.yml'
    cfg.write_text(json.dumps({'train_dataset': ds}))
    r = subprocess.run([sys.executable, os.path.join(ROOT, 'tools/data/browse_dataset.py'), '--config', str(cfg),
                        '--num', '2', '--seed', '1', '--save_dir', str(tmp_path / 'out')],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    files = sorted(os.listdir(tmp_path / 'out'))
    assert len(files) == 2 and 'wrote 2 image(s)' in r.stdout
    panel = cv2.imread(str(tmp_path / 'out' / files[0]))[:, :, ::-1]
    i = int(files[0].split('_')[0])
    assert panel.shape == (3 * 18 + 6, 30 * 2 + LEGEND_WIDTH, 3)  # the legend's 3 rows are taller than the image
    assert (panel[20:, :60] == 255).all()
    panel = panel[:20]
    assert (np.abs(panel[:, :30].astype(int) - 60 * i) <= 1).all()  # de-normalised input
    lab = cv2.imread(str(root / 'labels' / f'{i}.png'), cv2.IMREAD_UNCHANGED)[:, ::-1]  # flipped
    shown = panel[:, 30:60]
    for v, color in enumerate(PALETTE):
        assert (shown[lab == v] == color).all()
    assert (shown[lab == 255] == 0).all()
