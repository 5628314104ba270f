"""What an evaluation leaves behind in its folder (``val.py --save_dir D``, and
``save_dir/eval/iter_N/`` for every evaluation during training):

* ``metrics.json``: every metric (summary and per class, fractions in [0, 1]), the confusion
  matrix, the protocol (inference settings, ignore index, how means are taken), the model
  (config, type, weights file and its SHA-256 or the training iteration) and the data (dataset
  type, root, split, image count, a digest of the file list);
* ``confusion_matrix.png``: rows (ground truth) normalized to sum to 1, class names on both axes;
  above :data:`LABEL_ALL_MAX` classes the names no longer fit, so ticks carry class indices every
  few classes and the largest off-diagonal confusions are numbered on the matrix and named in a
  list beside it;
* ``per_class_iou.png``: per-class IoU as horizontal bars, sorted, with the mIoU line.

matplotlib (already installed with VisualDL) is imported here only, when the pictures are drawn,
with the non-interactive Agg canvas and without ``pyplot`` (no GUI backend, no global figure state).
"""
import hashlib
import json
import math
import os

import numpy as np

from ..utils.atomic import atomic_write_text
from .metrics import PER_CLASS, SUMMARY

LABEL_ALL_MAX = 40      # up to this many classes every name is written on both axes
CELL_TEXT_MAX = 25      # up to this many classes every cell >= 1% carries its percentage
NUM_CONFUSIONS = 20     # confusions annotated on a larger matrix
DPI = 100


# -- metrics.json ------------------------------------------------------------------------------

def _clean(v):
    """JSON-safe: NaN -> None, numpy scalars -> Python numbers."""
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_clean(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    return v


def data_identity(dataset):
    """Dataset type, root, split, image count and a SHA-256 of its (image, label) file list,
    relative to the root, so two reports can tell whether they evaluated the same images."""
    root = getattr(dataset, 'dataset_root', None)
    files = getattr(dataset, 'file_list', None)
    ident = {'type': type(dataset).__name__, 'dataset_root': root, 'mode': getattr(dataset, 'mode', None),
             'num_images': len(dataset), 'num_classes': int(dataset.num_classes),
             'ignore_index': int(getattr(dataset, 'ignore_index', 255))}
    if files:
        h = hashlib.sha256()
        for pair in files:
            for p in pair:
                h.update((os.path.relpath(p, root) if p and root else str(p)).encode('utf-8') + b'\0')
        ident['file_list_sha256'] = h.hexdigest()
    return ident


def metrics_document(res, model=None, data=None, protocol=None):
    """The ``metrics.json`` dictionary of an :func:`zoo.engine.evaluator.evaluate` result."""
    names = list(res['class_names'])
    per_class = []
    for i, name in enumerate(names):
        row = {'class': name, 'index': i}
        for key, _ in PER_CLASS:
            if key in res:
                row[key] = _clean(res[key][i])
        per_class.append(row)
    cm = np.asarray(res['confusion_matrix'])
    return {
        'unit': 'fraction (tables print percent with two decimals)',
        'summary': {k: _clean(res[k]) for k in SUMMARY if k in res},
        'per_class': per_class,
        'confusion_matrix': {'rows': 'ground truth', 'columns': 'prediction', 'counts': cm.tolist()},
        'protocol': dict(protocol or {}),
        'model': dict(model or {}),
        'data': dict(data or {}),
        **({'loss': _clean(res['loss'])} if res.get('loss') is not None else {}),
        **({'seconds': round(float(res['seconds']), 3)} if res.get('seconds') is not None else {}),
    }


def write_report(save_dir, res, model=None, data=None, protocol=None, pictures=True):
    """Write ``metrics.json`` (and, with ``pictures``, the two PNGs) into ``save_dir``; returns
    the paths written."""
    os.makedirs(save_dir, exist_ok=True)
    doc = metrics_document(res, model, data, protocol)
    path = os.path.join(save_dir, 'metrics.json')
    atomic_write_text(path, json.dumps(doc, indent=1, allow_nan=False) + '\n')
    written = [path]
    if pictures:
        names = list(res['class_names'])
        written.append(plot_confusion_matrix(res['confusion_matrix'], names,
                                             os.path.join(save_dir, 'confusion_matrix.png')))
        written.append(plot_per_class_iou(res['IoU'], names, res['mIoU'], os.path.join(save_dir, 'per_class_iou.png')))
    return written


# -- pictures ----------------------------------------------------------------------------------

def row_normalize(cm):
    """Each ground-truth row divided by its pixel count (rows without pixels stay NaN)."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    with np.errstate(divide='ignore', invalid='ignore'):
        return np.where(rows > 0, cm / np.where(rows > 0, rows, 1), np.nan)


def largest_confusions(cm, k=NUM_CONFUSIONS):
    """The ``k`` largest off-diagonal shares of the row-normalized matrix: ``[(true, pred, share)]``."""
    norm = np.nan_to_num(row_normalize(cm), nan=0.0)
    np.fill_diagonal(norm, 0.0)
    flat = np.argsort(norm, axis=None)[::-1][:k]
    out = []
    for idx in flat:
        t, p = divmod(int(idx), norm.shape[1])
        if norm[t, p] <= 0:
            break
        out.append((t, p, float(norm[t, p])))
    return out


def confusion_figure_size(num_classes):
    """``(width, height)`` in pixels of ``confusion_matrix.png`` (the figure is sized from the
    class count, so tests and readers know what to expect)."""
    if num_classes <= LABEL_ALL_MAX:
        side = max(6.0, 0.32 * num_classes + 3.5)
        return int(round((side + 0.4) * DPI)), int(round(side * DPI))
    side = min(14.0, max(9.0, 0.06 * num_classes + 4.0))
    return int(round((side + 4.3) * DPI)), int(round(side * DPI))


def _figure(width_px, height_px):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    tmp = f'{path}.tmp.png'
    fig.savefig(tmp, dpi=DPI, format='png')  # a fixed canvas (no bbox_inches='tight'): a known size
    os.replace(tmp, path)
    return path


def plot_confusion_matrix(cm, class_names, path):
    """Row-normalized confusion matrix as a PNG (see the module docstring); returns ``path``."""
    from matplotlib.colors import PowerNorm
    cm = np.asarray(cm)
    n = cm.shape[0]
    norm = row_normalize(cm)
    w, h = confusion_figure_size(n)
    fig = _figure(w, h)
    big = n > LABEL_ALL_MAX
    # layout in inches: a square matrix, room for names (or indices) left and below and a title
    # above; the colorbar (and, when big, the list of confusions) to its right
    W, H = w / DPI, h / DPI
    left, bottom, top = (0.55, 0.55, 0.55) if big else (1.5, 1.5, 0.6)
    side = H - bottom - top
    ax = fig.add_axes([left / W, bottom / H, side / W, side / H])
    shown = np.ma.masked_invalid(norm)
    # a square-root colour scale: the diagonal is near 1, the confusions worth seeing are a few %
    im = ax.imshow(shown, cmap='Blues', norm=PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0), interpolation='nearest')
    ax.set_facecolor('#dddddd')  # rows without ground-truth pixels
    cax = fig.add_axes([(left + side + 0.15) / W, bottom / H, 0.18 / W, side / H])
    cb = fig.colorbar(im, cax=cax)
    cb.set_ticks([0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0])
    cb.set_ticklabels(['0', '1%', '5%', '10%', '25%', '50%', '75%', '100%'])
    cb.ax.tick_params(labelsize=8)
    ax.set_xlabel('prediction', fontsize=10)
    ax.set_ylabel('ground truth', fontsize=10)
    if not big:
        fs = 9 if n <= 20 else 7
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.set_xticklabels(class_names, rotation=60, ha='right', rotation_mode='anchor', fontsize=fs)
        ax.set_yticklabels(class_names, fontsize=fs)
        if n <= CELL_TEXT_MAX:
            for t in range(n):
                for p in range(n):
                    v = norm[t, p]
                    if np.isfinite(v) and v >= 0.005:
                        ax.text(p, t, f'{100 * v:.0f}', ha='center', va='center', fontsize=7 if n > 12 else 8,
                                color='white' if v > 0.45 else '#222222')
        ax.set_title('confusion matrix (% of each ground-truth class)', fontsize=11)
    else:
        step = 10 if n <= 200 else 20
        ax.set_xticks(range(0, n, step))
        ax.set_yticks(range(0, n, step))
        ax.tick_params(labelsize=8)
        ax.set_title(f'confusion matrix, {n} classes (% of each ground-truth class; class indices)', fontsize=10)
        top = largest_confusions(cm)
        lines = []
        for k, (t, p, v) in enumerate(top, 1):
            ax.plot(p, t, marker='o', markersize=9, markerfacecolor='none', markeredgecolor='#d62728', markeredgewidth=1.2)
            ax.annotate(str(k), (p, t), xytext=(4, 4), textcoords='offset points', fontsize=7, color='#d62728',
                        fontweight='bold')
            lines.append(f'{k:>2}. {_short(class_names[t])} [{t}] \u2192 {_short(class_names[p])} [{p}]: {100 * v:.1f}%')
        text_x = (left + side + 0.95) / W
        fig.text(text_x, (bottom + side) / H, 'largest confusions\n(ground truth \u2192 prediction: % of its pixels)',
                 fontsize=9, va='top', fontweight='bold')
        fig.text(text_x, (bottom + side - 0.45) / H, '\n'.join(lines) if lines else '(none)', fontsize=8, va='top',
                 family='monospace')
    return _save(fig, path)


def _short(name, width=18):
    name = str(name)
    return name if len(name) <= width else name[:width - 1] + '\u2026'


def per_class_figure_size(num_classes):
    """``(width, height)`` in pixels of ``per_class_iou.png``: one bar row per class."""
    return 8 * DPI, int(round((1.3 + 0.2 * max(num_classes, 5)) * DPI))


def plot_per_class_iou(iou, class_names, miou, path):
    """Per-class IoU, highest first, with a dashed mIoU line; classes without pixels are listed
    at the bottom as 'n/a'. Returns ``path``."""
    iou = np.asarray(iou, dtype=np.float64)
    n = len(iou)
    order = sorted(range(n), key=lambda i: (not np.isfinite(iou[i]), -np.nan_to_num(iou[i], nan=-1.0)))
    w, h = per_class_figure_size(n)
    fig = _figure(w, h)
    ax = fig.add_axes([2.0 / (w / DPI), 0.55 / (h / DPI), 1 - 2.5 / (w / DPI), 1 - 1.1 / (h / DPI)])
    vals = [100 * iou[i] if np.isfinite(iou[i]) else 0.0 for i in order]
    ys = np.arange(n)
    colors = ['#4c72b0' if np.isfinite(iou[i]) else '#bbbbbb' for i in order]
    ax.barh(ys, vals, color=colors, height=0.75)
    fs = 9 if n <= 40 else 7
    for y, i, v in zip(ys, order, vals):
        ax.text(v + 0.8, y, f'{v:.2f}' if np.isfinite(iou[i]) else 'n/a', va='center', fontsize=fs - 1)
    ax.set_yticks(ys)
    ax.set_yticklabels([str(class_names[i]) for i in order], fontsize=fs)
    ax.set_ylim(n - 0.5, -0.5)
    ax.set_xlim(0, 108)
    ax.set_xlabel('IoU (%)', fontsize=9)
    if miou is not None and np.isfinite(miou):
        ax.axvline(100 * miou, color='#d62728', linestyle='--', linewidth=1)
        ax.set_title(f'per-class IoU (mIoU {100 * miou:.2f}, dashed)', fontsize=11)
    ax.xaxis.set_ticks_position('both')
    ax.tick_params(axis='x', labelsize=8, labeltop=n > 40)
    ax.grid(axis='x', alpha=0.3)
    return _save(fig, path)
