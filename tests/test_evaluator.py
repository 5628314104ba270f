"""evaluate() on a tiny generated dataset gives the brute-force numbers; VisualDL logging;
the report folder (metrics.json equal to the printed table, the pictures); DataLoader errors
reach the user as one line."""
import json
import logging
import os
import re

import cv2
import numpy as np
import paddle
import paddle.nn as nn
import pytest
from PIL import Image

from zoo.datasets.base import Dataset
from zoo.engine.evaluator import evaluate
from zoo.engine.metrics import SUMMARY
from zoo.engine.visual import colorize, generate_palette
from zoo.utils.cli import main_wrapper
from zoo.utils.errors import DataError

NUM_CLASSES = 4
W = np.array([[0.02, -0.01, 0.0], [-0.01, 0.02, 0.0], [0.0, 0.0, 0.02], [0.01, 0.01, -0.015]], np.float32)
B = np.array([0.0, 0.1, -0.3, 0.2], np.float32)


class PixelNet(nn.Layer):
    """A 1x1 conv on the raw RGB values: the prediction of each pixel is known in numpy."""

    def __init__(self):
        super().__init__()
        self.align_corners = False
        self.conv = nn.Conv2D(3, NUM_CLASSES, 1)
        self.conv.weight.set_value(W.reshape(NUM_CLASSES, 3, 1, 1))
        self.conv.bias.set_value(B)

    def forward(self, x):
        return [self.conv(x)]


def write_dataset(root, shapes=((6, 8), (5, 7), (9, 4)), seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, 'img'), exist_ok=True)
    os.makedirs(os.path.join(root, 'lab'), exist_ok=True)
    lines, samples = [], []
    for i, (h, w) in enumerate(shapes):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        lab = rng.integers(0, 3, (h, w), dtype=np.uint8)  # class 3 never labelled
        lab[0, :] = 255
        cv2.imwrite(os.path.join(root, 'img', f'{i}.png'), rgb[:, :, ::-1])
        cv2.imwrite(os.path.join(root, 'lab', f'{i}.png'), lab)
        lines.append(f'img/{i}.png lab/{i}.png')
        samples.append((rgb.astype(np.float32), lab.astype(np.int64)))
    with open(os.path.join(root, 'val.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return samples


def brute_force(samples):
    inter = np.zeros(NUM_CLASSES)
    n_label = np.zeros(NUM_CLASSES)
    n_pred = np.zeros(NUM_CLASSES)
    for rgb, lab in samples:
        pred = np.argmax(np.einsum('ck,hwk->chw', W, rgb) + B[:, None, None], axis=0)
        for c in range(NUM_CLASSES):
            valid = lab != 255
            inter[c] += np.sum((pred == c) & (lab == c) & valid)
            n_label[c] += np.sum((lab == c) & valid)
            n_pred[c] += np.sum((pred == c) & valid)
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = np.where(n_label + n_pred - inter > 0, inter / (n_label + n_pred - inter), np.nan)
        acc = np.where(n_label > 0, inter / n_label, np.nan)
    return iou, acc, inter.sum() / n_label.sum()


class FakeWriter:
    def __init__(self):
        self.scalars, self.images = [], []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def add_image(self, tag, img, step, dataformats='HWC'):
        self.images.append((tag, img, step, dataformats))


def make_dataset(root):
    return Dataset(root, transforms=[], num_classes=NUM_CLASSES, mode='val', val_path='val.txt')


def test_evaluate_matches_brute_force_and_logs(tmp_path):
    samples = write_dataset(str(tmp_path))
    iou, acc, aacc = brute_force(samples)
    assert np.isnan(iou).sum() <= 1 and np.isnan(acc[3])  # class 3 has no label pixels
    writer = FakeWriter()
    res = evaluate(PixelNet(), make_dataset(str(tmp_path)), {}, print_detail=True, vdl_writer=writer, iteration=7,
                   num_vis=2)
    np.testing.assert_allclose(res['IoU'], iou, equal_nan=True, rtol=1e-12)
    np.testing.assert_allclose(res['Acc'], acc, equal_nan=True, rtol=1e-12)
    assert res['mIoU'] == pytest.approx(np.nanmean(iou)) and res['mAcc'] == pytest.approx(np.nanmean(acc))
    assert res['aAcc'] == pytest.approx(aacc)
    assert res['class_names'] == ['0', '1', '2', '3']
    assert [(t, s) for t, _, s in writer.scalars] == [(f'Evaluate/{k}', 7) for k in SUMMARY]
    assert dict((t, v) for t, v, _ in writer.scalars)['Evaluate/mIoU'] == pytest.approx(res['mIoU'])
    assert [t for t, *_ in writer.images] == ['Evaluate/image_0', 'Evaluate/image_1']
    panel = writer.images[0][1]
    # a 2 x 2 grid (input | truth / prediction | legend) of 6x8 cells enlarged 42x (to >= 252 px high),
    # each under a title row
    from zoo.engine import visual
    title_h = visual._text_size('Ag', visual._font_scale(8 * 42))[1] * 2 + 4
    assert panel.dtype == np.uint8 and panel.shape == (2 * (title_h + 6 * 42) + visual.GAP, 2 * 8 * 42 + visual.GAP, 3)
    truth = panel[title_h:title_h + 6 * 42, 8 * 42 + visual.GAP:]
    lab0 = cv2.imread(str(tmp_path / 'lab' / '0.png'), cv2.IMREAD_UNCHANGED)
    want = colorize(lab0, generate_palette(NUM_CLASSES))
    np.testing.assert_array_equal(truth, np.repeat(np.repeat(want, 42, axis=0), 42, axis=1))
    assert (truth[:42] == 0).all()  # the ignored first label row is black


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.text = []

    def emit(self, record):
        self.text.append(record.getMessage())


def test_report_folder_holds_the_printed_numbers(tmp_path):
    from zoo.engine.report import confusion_figure_size, per_class_figure_size, row_normalize
    write_dataset(str(tmp_path / 'data'))
    lines = _Lines()
    logging.getLogger('zoo').addHandler(lines)
    try:
        res = evaluate(PixelNet(), make_dataset(str(tmp_path / 'data')), {}, save_dir=str(tmp_path / 'rep'),
                       loss_fn=paddle.nn.CrossEntropyLoss(axis=1, ignore_index=255),
                       identity={'model': {'type': 'PixelNet', 'weights': 'in memory'}})
    finally:
        logging.getLogger('zoo').removeHandler(lines)
    printed = '\n'.join(lines.text)
    assert printed.count('mIoU') == 1  # once, in the summary row
    with open(tmp_path / 'rep' / 'metrics.json') as f:
        doc = json.load(f)
    # the summary row of the printed table == metrics.json, in percent with two decimals
    rows = [ln for ln in printed.splitlines() if ln.startswith('|')]
    header = [c.strip() for c in rows[-2].strip('|').split('|')]
    values = [c.strip() for c in rows[-1].strip('|').split('|')]
    assert header == [k for k in SUMMARY if k != 'mRecall']
    for key, shown in zip(header, values):
        assert shown == f'{100 * doc["summary"][key]:.2f}', key
    assert doc['summary']['mRecall'] == doc['summary']['mAcc']
    # per-class rows too
    per_class = {r.split('|')[1].strip(): [c.strip() for c in r.strip('|').split('|')[1:]] for r in rows
                 if re.match(r'^\|\s+\d\s+\|', r)}
    for row in doc['per_class']:
        shown = per_class[row['class']]
        for key, cell in zip(('IoU', 'Acc', 'Dice', 'Precision', 'Fscore'), shown):
            want = 'nan' if row[key] is None else f'{100 * row[key]:.2f}'
            assert cell == want, (row['class'], key)
    np.testing.assert_array_equal(doc['confusion_matrix']['counts'], res['confusion_matrix'])
    assert doc['data']['num_images'] == 3 and len(doc['data']['file_list_sha256']) == 64
    assert doc['model'] == {'type': 'PixelNet', 'weights': 'in memory'}
    assert doc['protocol']['ignore_index'] == 255 and doc['protocol']['processes'] == 1
    assert doc['loss'] == pytest.approx(res['loss']) and res['loss'] > 0
    # the pictures: the size the class count gives; the plotted rows sum to 1 (or are empty)
    cm_png = Image.open(tmp_path / 'rep' / 'confusion_matrix.png')
    assert cm_png.size == confusion_figure_size(NUM_CLASSES)
    assert Image.open(tmp_path / 'rep' / 'per_class_iou.png').size == per_class_figure_size(NUM_CLASSES)
    sums = np.nansum(row_normalize(res['confusion_matrix']), axis=1)
    np.testing.assert_allclose(sums[:3], 1.0)
    assert sums[3] == 0  # class 3 has no ground-truth pixel: an empty (grey) row
    # the panels stacked, padded to the widest (the 5x7 image, enlarged 51x)
    assert Image.open(tmp_path / 'rep' / 'samples.png').size[0] == 2 * 7 * 51 + 6


def test_evaluate_with_workers_and_aug_gives_the_same(tmp_path):
    write_dataset(str(tmp_path))
    ds = make_dataset(str(tmp_path))
    base = evaluate(PixelNet(), ds, {}, print_detail=False)
    # a pointwise model: flips do not change the prediction; the DataLoader path reads the same data
    res = evaluate(PixelNet(), ds, {'flip_horizontal': True}, num_workers=1, print_detail=False)
    np.testing.assert_array_equal(res['confusion_matrix'], base['confusion_matrix'])


class BrokenDataset(paddle.io.Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, i):
        if i == 1:
            raise DataError("label 'lab/1.png' has values [7] outside [0, 3] (ignore index 255)")
        return np.zeros(2, np.float32)


@pytest.mark.parametrize('num_workers', [0, 1])
def test_dataloader_error_is_one_line(num_workers, capsys):
    def main():
        for _ in paddle.io.DataLoader(BrokenDataset(), batch_size=1, num_workers=num_workers):
            pass

    with pytest.raises(SystemExit) as e:
        main_wrapper(main)  # without the hook, num_workers=0 hangs and 1 raises SystemError
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "error: label 'lab/1.png' has values [7] outside [0, 3] (ignore index 255)"


def test_main_wrapper_exit_codes(capsys):
    def interrupted():
        raise KeyboardInterrupt

    def missing_file():
        open('/nonexistent/zoo/config.yml')

    def bug():
        raise RuntimeError('a real bug keeps its traceback')

    with pytest.raises(SystemExit) as e:
        main_wrapper(interrupted)
    assert e.value.code == 130
    with pytest.raises(SystemExit) as e:
        main_wrapper(missing_file)
    assert e.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        'error: No such file or directory: /nonexistent/zoo/config.yml'
    with pytest.raises(RuntimeError):
        main_wrapper(bug)
