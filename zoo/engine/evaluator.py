"""Evaluate a model on a validation dataset: mIoU, aAcc, mAcc, mDice, mPrecision, mRecall,
mFscore, Kappa and the per-class values (``zoo/engine/metrics.py``), the validation loss, and
with ``save_dir`` the report files of ``zoo/engine/report.py``.

One image at a time (batch size 1; labels stay at their original size, see
``zoo/datasets/base.py``), through :func:`zoo.engine.inference.inference`, into one confusion
matrix that is summed over processes in a distributed run.

Distributed split: rank ``r`` of ``W`` takes images ``r, r + W, r + 2W, ...``. Paddle's
``DistributedBatchSampler`` would instead pad the last round with repeated images, which
counts them twice in the metrics; this split covers every image exactly once.
"""
import os
import time

import numpy as np
import paddle
import paddle.distributed as dist

from ..datasets.base import EvalSamples
from ..datasets.transforms import find_normalize
from ..utils.loader_guard import worker_init_fn
from ..utils.logger import logger
from .inference import inference
from .metrics import SUMMARY, ConfusionMatrix, format_table
from .progress import Progress, fmt_duration
from .visual import class_names_of, denormalize, get_palette, labelled_panel


def _samples(dataset, indices, num_workers, with_image=False):
    """Yield ``(img [1,3,H,W] tensor, label HxW numpy, extras)``: the ``inference`` keywords
    ``valid_shape`` and, ``with_image``, ``image`` (see ``Dataset.get_item``)."""
    def extras(valid, image):
        return dict(valid_shape=tuple(int(v) for v in valid), **({'image': image} if with_image else {}))

    if num_workers <= 0:
        # Paddle 3.2.2's single-process DataLoader hangs when the dataset raises (see
        # zoo.utils.loader_guard); reading directly is equivalent for batch size 1 and fails cleanly.
        for i in indices:
            img, label, valid, image = dataset.get_item(i, with_image)
            yield paddle.to_tensor(img[None]), label, extras(valid, image)
        return
    loader = paddle.io.DataLoader(
        EvalSamples(dataset, with_image), batch_sampler=paddle.io.BatchSampler(sampler=_ListSampler(indices),
                                                                               batch_size=1),
        num_workers=num_workers, return_list=True, worker_init_fn=worker_init_fn)  # workers die with us
    for img, label, valid, *image in loader:
        yield img, label.numpy()[0], extras(valid.numpy()[0], image[0].numpy()[0] if with_image else None)


class _ListSampler(paddle.io.Sampler):
    """This rank's share of the images, in order."""

    def __init__(self, indices):
        super().__init__()
        self.indices = list(indices)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def gives_logits(test_kwargs):
    """True when :func:`inference` returns logits (one pass): the validation loss is defined.
    Merged passes (multi-scale, flips, window softmax) are averaged probabilities."""
    kw = test_kwargs or {}
    scales = tuple(kw.get('scales') or (1.0,))
    return (len(scales) == 1 and not kw.get('flip_horizontal') and not kw.get('flip_vertical')
            and not kw.get('window_softmax'))


def evaluate(model, dataset, test_kwargs=None, num_workers=0, print_detail=True, vdl_writer=None, iteration=None,
             num_vis=3, loss_fn=None, save_dir=None, identity=None, vdl_prefix='Evaluate', title=None):
    """Evaluate ``model`` on ``dataset``; returns a dict of metrics (fractions in [0, 1]).

    Keys: the summary metrics (``mIoU``, ``aAcc``, ``mAcc``, ``mDice``, ``mPrecision``,
    ``mRecall``, ``mFscore``, ``Kappa``), per-class arrays (``IoU``, ``Acc``, ``Dice``,
    ``Precision``, ``Recall``, ``Fscore``; NaN where undefined), ``class_names``,
    ``confusion_matrix``, ``seconds``, and ``loss`` (mean over images of ``loss_fn(logits,
    label)``, when given and the inference gives logits). ``test_kwargs`` are :func:`inference`
    keyword arguments (see :func:`zoo.engine.inference.parse_test_config`).

    ``print_detail``: log the table (percent, two decimals; mIoU appears once, in the summary
    row). ``vdl_writer``: log ``<vdl_prefix>/<metric>`` and ``loss`` at step ``iteration`` and
    ``num_vis`` labelled panels (input | ground truth | prediction, class legend).
    ``save_dir``: write ``metrics.json``, ``confusion_matrix.png``, ``per_class_iou.png`` and
    the panels (``samples.png``) there (rank 0); ``identity`` adds the ``model`` / ``protocol``
    entries of ``metrics.json``. The model is left in eval mode.
    """
    t0 = time.perf_counter()
    test_kwargs = dict(test_kwargs or {})
    num_classes = int(dataset.num_classes)
    ignore_index = int(getattr(dataset, 'ignore_index', 255))
    world = dist.get_world_size()
    rank = dist.get_rank()
    indices = list(range(rank, len(dataset), world))
    cm = ConfusionMatrix(num_classes, ignore_index)
    want_vis = (vdl_writer is not None or save_dir is not None) and num_vis > 0 and rank == 0
    palette = get_palette(num_classes, dataset) if want_vis else None
    if loss_fn is not None and not gives_logits(test_kwargs):
        logger.info('[EVAL] no validation loss: merged test-time passes give probabilities, not logits')
        loss_fn = None
    loss_sum = np.zeros(2, dtype=np.float64)  # sum of per-image losses, image count
    vis = []
    with_image = test_kwargs.get('aug_resize') == 'image'  # TTA from the loaded image (mmseg's)
    if with_image:
        extras_all = {'normalize': find_normalize(getattr(dataset, 'transforms', None))}
    else:
        extras_all = {}
    model.eval()
    bar = Progress(len(indices) * world, 'eval', enabled=rank == 0)
    try:
        with paddle.no_grad():
            for k, (img, label, extras) in enumerate(_samples(dataset, indices, num_workers, with_image)):
                logits = inference(model, img, ori_shape=label.shape[-2:],
                                   flip_swap_pairs=getattr(dataset, 'FLIP_PAIRS', ()), **extras, **extras_all,
                                   **test_kwargs)
                pred = paddle.argmax(logits, axis=1).numpy()[0]
                cm.update(pred, label)
                if loss_fn is not None:
                    value = float(loss_fn(logits, paddle.to_tensor(np.asarray(label, dtype='int64')[None])))
                    if np.isfinite(value):  # an image whose pixels are all ignored has no loss
                        loss_sum += (value, 1.0)
                if want_vis and k < num_vis:
                    vis.append((img.numpy()[0], label, pred))
                bar.update(world)  # rank 0 stands for all: the ranks advance together
    finally:
        bar.close()
    cm.all_reduce()
    if loss_fn is not None and world > 1:
        t = paddle.to_tensor(loss_sum)
        dist.all_reduce(t)
        loss_sum = t.numpy()
    res = cm.compute()
    res['class_names'] = class_names_of(dataset, num_classes)
    res['confusion_matrix'] = cm.mat
    res['loss'] = float(loss_sum[0] / loss_sum[1]) if loss_fn is not None and loss_sum[1] > 0 else None
    res['seconds'] = time.perf_counter() - t0
    if print_detail:
        head = f'[EVAL] {title + ": " if title else ""}{len(dataset)} images in {fmt_duration(res["seconds"])}'
        if res['loss'] is not None:
            head += f', loss {res["loss"]:.4f}'
        logger.info(head + '\n' + format_table(res, res['class_names']))
    if rank == 0:
        transforms = getattr(dataset, 'transforms', None)
        panels = [labelled_panel(denormalize(img, transforms), label, pred, palette, res['class_names'], ignore_index)
                  for img, label, pred in vis]
        if vdl_writer is not None:
            step = 0 if iteration is None else int(iteration)
            for key in SUMMARY:
                vdl_writer.add_scalar(f'{vdl_prefix}/{key}', float(res[key]), step)
            if res['loss'] is not None:
                vdl_writer.add_scalar(f'{vdl_prefix}/loss', res['loss'], step)
            for i, panel in enumerate(panels):
                vdl_writer.add_image(f'{vdl_prefix}/image_{i}', panel, step, dataformats='HWC')
        if save_dir is not None:
            t_report = time.perf_counter()
            from .report import data_identity, write_report
            ident = dict(identity or {})
            protocol = {'inference': _jsonable(test_kwargs), 'ignore_index': ignore_index,
                        'means': 'over classes, skipping NaN (classes absent from labels and predictions)',
                        'definitions': 'mmsegmentation IoUMetric (see zoo/engine/metrics.py)',
                        'processes': world, **ident.pop('protocol', {})}
            written = write_report(save_dir, res, model=ident.pop('model', None), data=data_identity(dataset),
                                   protocol=protocol)
            if panels:
                written.append(_save_panels(panels, save_dir))
            logger.info(f'[EVAL] wrote {", ".join(os.path.basename(p) for p in written)} to {save_dir} '
                        f'in {fmt_duration(time.perf_counter() - t_report)}')
    return res


def _jsonable(d):
    out = {}
    for k, v in d.items():
        if isinstance(v, tuple):
            v = list(v)
        if isinstance(v, (str, int, float, bool, list)) or v is None:
            out[k] = v
    return out


def _save_panels(panels, save_dir):
    import cv2
    width = max(p.shape[1] for p in panels)
    padded = [np.pad(p, ((0, 6), (0, width - p.shape[1]), (0, 0)), constant_values=255) for p in panels]
    path = os.path.join(save_dir, 'samples.png')
    cv2.imwrite(path, np.concatenate(padded, axis=0)[:, :, ::-1])
    return path
