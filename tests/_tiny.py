"""A tiny dataset and model for trainer tests (fast on CPU; the real models have their own tests)."""
import os

import cv2
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from zoo.utils.registry import MODELS


def make_tiny_dataset(root, n=8, size=32, seed=0):
    """Images of colored squares on noise; label 1 = red square, 2 = blue square, 0 = rest."""
    rng = np.random.RandomState(seed)
    os.makedirs(os.path.join(root, 'img'), exist_ok=True)
    os.makedirs(os.path.join(root, 'lab'), exist_ok=True)
    lines = []
    for i in range(n):
        img = rng.randint(60, 160, (size, size, 3)).astype('uint8')
        lab = np.zeros((size, size), 'uint8')
        for cls, color in ((1, (0, 0, 230)), (2, (230, 0, 0))):  # BGR for cv2
            s = rng.randint(size // 4, size // 2)
            y, x = rng.randint(0, size - s, 2)
            img[y:y + s, x:x + s] = color
            lab[y:y + s, x:x + s] = cls
        cv2.imwrite(os.path.join(root, 'img', f'{i}.png'), img)
        cv2.imwrite(os.path.join(root, 'lab', f'{i}.png'), lab)
        lines.append(f'img/{i}.png lab/{i}.png')
    with open(os.path.join(root, 'list.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return root


def tiny_config(root, iters=6, batch_size=2, **model):
    ds = {'type': 'Dataset', 'dataset_root': root, 'train_path': 'list.txt', 'val_path': 'list.txt',
          'num_classes': 3, 'transforms': [{'type': 'Normalize'}]}
    return {
        'batch_size': batch_size, 'iters': iters,
        'train_dataset': {**ds, 'mode': 'train'}, 'val_dataset': {**ds, 'mode': 'val'},
        'model': {'type': 'TinySegNet', **model},
        'loss': {'types': [{'type': 'CrossEntropyLoss'}], 'coef': [1, 0.4]},
        'optimizer': {'type': 'SGD', 'momentum': 0.9, 'weight_decay': 1.0e-4},
        'lr_scheduler': {'type': 'PolynomialDecay', 'learning_rate': 0.05, 'power': 0.9},
        'train': {'log_iters': 1, 'save_interval': 3},
    }


@MODELS.register()
class TinySegNet(nn.Layer):
    """conv-bn-relu x2 with dropout and an auxiliary head. Faults for the reliability tests:
    ``nan_after=k``: the logits are NaN from forward call k + 1; ``nan_weights_after=k``: after
    training step k the first BN's running variance becomes NaN (the loss stays finite)."""

    def __init__(self, num_classes, align_corners=False, width=8, nan_after=-1, nan_weights_after=-1):
        super().__init__()
        self.align_corners = align_corners
        self.stem = nn.Sequential(nn.Conv2D(3, width, 3, padding=1), nn.BatchNorm2D(width), nn.ReLU(),
                                  nn.Conv2D(width, width, 3, stride=2, padding=1), nn.BatchNorm2D(width), nn.ReLU())
        self.drop = nn.Dropout2D(0.1)
        self.cls = nn.Conv2D(width, num_classes, 1)
        self.aux = nn.Conv2D(width, num_classes, 1)
        self.nan_after = nan_after
        self.nan_weights_after = nan_weights_after
        self.calls = 0

    def train_step_hook(self, labels, lr, iteration):
        if 0 <= self.nan_weights_after < iteration:
            var = self.stem[1]._variance
            var.set_value(paddle.full(var.shape, float('nan'), var.dtype))

    def forward(self, x):
        self.calls += 1
        f = self.stem(x)
        out = self.cls(self.drop(f))
        if 0 <= self.nan_after < self.calls:
            out = out * float('nan')
        size = paddle.shape(x)[2:]
        logits = [F.interpolate(out, size=size, mode='bilinear', align_corners=self.align_corners)]
        if self.training:
            logits.append(F.interpolate(self.aux(f), size=size, mode='bilinear', align_corners=self.align_corners))
        return logits


def record_losses(trainer):
    """Make ``trainer`` append each step's total loss to the returned list."""
    losses = []
    forward = trainer._forward_loss

    def spy(img, label):
        total, parts = forward(img, label)
        losses.append(float(total))
        return total, parts
    trainer._forward_loss = spy
    return losses
