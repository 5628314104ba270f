"""What the model will see: training samples after the train transforms, as
``input | coloured label | legend`` panels (``tools/data/browse_dataset.py``).

The input is shown de-normalised (the pipeline's Normalize undone), the label in the dataset's
palette (``dataset.palette``, ignored pixels black), and the legend names every class present
in that label with its colour (``dataset.class_names``).
"""
import os
import random

import cv2
import numpy as np

from .visual import colorize, denormalize

ROW, SWATCH, LEGEND_WIDTH = 18, 12, 180


def legend(ids, names, palette, height, ignore=False):
    """A ``height x LEGEND_WIDTH`` RGB panel listing ``ids`` (and "ignored" in black)."""
    rows = [(str(names[i]) if i < len(names) else str(i), tuple(int(c) for c in palette[i])) for i in ids]
    if ignore:
        rows.append(('(ignored)', (0, 0, 0)))
    out = np.full((max(height, ROW * len(rows) + 6), LEGEND_WIDTH, 3), 255, np.uint8)
    for k, (name, color) in enumerate(rows):
        y = 4 + k * ROW
        cv2.rectangle(out, (4, y), (4 + SWATCH, y + SWATCH), color, -1)
        cv2.rectangle(out, (4, y), (4 + SWATCH, y + SWATCH), (90, 90, 90), 1)
        cv2.putText(out, name[:24], (4 + SWATCH + 6, y + SWATCH - 1), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return out


def sample_panel(dataset, index):
    """``input | label | legend`` (RGB uint8) of ``dataset[index]`` after its transforms."""
    img, label = dataset[index]
    names, palette = dataset.class_names, np.asarray(dataset.palette, np.uint8)
    ignore = int(dataset.ignore_index)
    rgb = denormalize(img, getattr(dataset, 'transforms', None))
    label = np.asarray(label)
    if label.shape != rgb.shape[:2]:  # val mode keeps the original label size
        label = cv2.resize(label.astype(np.int32), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
    present = [int(v) for v in np.unique(label) if v != ignore and 0 <= v < len(palette)]
    side = legend(present, names, palette, rgb.shape[0], ignore=bool((label == ignore).any()))
    h = side.shape[0]
    pad = lambda a: np.pad(a, ((0, h - a.shape[0]), (0, 0), (0, 0)), constant_values=255)  # noqa: E731
    return np.concatenate([pad(rgb), pad(colorize(label, palette, ignore)), side], axis=1)


def browse(dataset, save_dir, num=8, seed=0, indices=None):
    """Write panels of ``num`` samples (random with ``seed``, or ``indices``) to ``save_dir``;
    returns the paths. Sample ``i`` gets the augmentation training gives index ``i`` in epoch 0."""
    n = len(dataset)
    if indices is None:
        indices = sorted(random.Random(seed).sample(range(n), min(num, n)))
    os.makedirs(save_dir, exist_ok=True)
    paths = []
    for i in indices:
        img_path = dataset.file_list[i % n][0] if hasattr(dataset, 'file_list') else str(i)
        stem = os.path.splitext(os.path.basename(img_path))[0]
        out = os.path.join(save_dir, f'{i:05d}_{stem}.png')
        cv2.imwrite(out, sample_panel(dataset, i)[:, :, ::-1])
        paths.append(out)
    return paths
