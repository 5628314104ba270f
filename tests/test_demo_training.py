"""End to end on generated demo data: Fast-SCNN (the demo config) trains, the loss falls and
the validation mIoU clears a threshold well above the majority-class baseline.

A miniature of ``make demo`` (which trains longer at 128x256 and must reach 0.80): 64x128
images, a short schedule; it runs in about a minute on 2 CPU cores.
"""
import os

import numpy as np
import pytest

from zoo.datasets.prepare.demo import generate_demo_dataset, majority_baseline
from zoo.engine.trainer import Trainer
from zoo.utils.config import Config

from _tiny import record_losses

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CONFIG = os.path.join(REPO, 'configs', 'demo', 'fast_scnn_demo_96x192_1k.yml')
ITERS = 120
THRESHOLD = 0.2


@pytest.fixture(scope='module')
def small_demo(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('small_demo'))
    generate_demo_dataset(root, num_train=48, num_val=8, height=64, width=128, seed=1)
    return root


def test_fast_scnn_learns_the_demo_data(small_demo, tmp_path):
    opts = [f'train_dataset.dataset_root={small_demo}', f'val_dataset.dataset_root={small_demo}',
            'train_dataset.transforms.0.scale=[128, 64]', 'train_dataset.transforms.1.crop_size=[64, 128]',
            'train_dataset.transforms.5.size=[64, 128]', 'lr_scheduler.warmup_iters=10']
    cfg = Config(DEMO_CONFIG, opts=opts, iters=ITERS, batch_size=4)
    trainer = Trainer(cfg, save_dir=str(tmp_path), do_eval=True, save_interval=ITERS, seed=0)
    losses = record_losses(trainer)
    result = trainer.train()
    baseline = majority_baseline(small_demo)['miou']
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10]), losses
    assert result["best_miou"] >= THRESHOLD > 1.6 * baseline, (result, baseline)
    assert os.path.isfile(tmp_path / 'best_model' / 'model.pdparams')
