"""Labelled panels: the grid layout, the legend's classes (all, or those present), overflow."""
import numpy as np

from zoo.engine import visual


def _colors(img):
    return {tuple(int(v) for v in px) for px in np.unique(img.reshape(-1, 3), axis=0)}


def distinct_palette(n):
    """Colors that never occur in anti-aliased dark text on white (each channel a multiple of 7)."""
    rng = np.random.default_rng(0)
    return (rng.choice(np.arange(7, 250, 7), size=(n, 3))).astype(np.uint8)


def test_legend_lists_every_class_of_a_small_set():
    pal = distinct_palette(6)
    label = np.zeros((8, 16), np.int64)
    label[0] = 255
    panel = visual.labelled_panel(np.zeros((8, 16, 3), np.uint8), label, label, pal, [f'c{i}' for i in range(6)])
    h, w = panel.shape[:2]
    legend = _colors(panel[h // 2:, w // 2:])
    for c in range(6):  # all six swatches, though only class 0 occurs
        assert tuple(int(v) for v in pal[c]) in legend, c
    assert (0, 0, 0) in legend  # the 'ignored' swatch: the label has ignored pixels


def test_legend_of_a_large_set_shows_the_classes_present():
    pal = distinct_palette(150)
    label = np.full((16, 16), 7, np.int64)
    label[:, 8:] = 42
    pred = label.copy()
    pred[0, 0] = 99
    panel = visual.labelled_panel(np.zeros((16, 16, 3), np.uint8), label, pred, pal, [f'c{i}' for i in range(150)])
    h, w = panel.shape[:2]
    legend = _colors(panel[h // 2:, w // 2:])
    shown = {c for c in range(150) if tuple(int(v) for v in pal[c]) in legend}
    assert shown == {7, 42, 99}


def test_legend_overflow_is_counted():
    pal = distinct_palette(60)
    cell = visual.legend_cell(list(range(60)), [f'class {i}' for i in range(60)], pal, 200, 120, font=0.5)
    colors = _colors(cell)
    shown = sum(tuple(int(v) for v in pal[c]) in colors for c in range(60))
    assert 0 < shown < 60  # the rest is written as '+N more'
