"""Evaluate a model on a validation dataset: mIoU, aAcc, mAcc and per-class IoU / Acc.

One image at a time (batch size 1; labels stay at their original size, see
``zoo/datasets/base.py``), through :func:`zoo.engine.inference.inference`, into one confusion
matrix that is summed over processes in a distributed run.

Distributed split: rank ``r`` of ``W`` takes images ``r, r + W, r + 2W, ...``. Paddle's
``DistributedBatchSampler`` would instead pad the last round with repeated images, which
counts them twice in the metrics; this split covers every image exactly once.
"""
import sys

import numpy as np
import paddle
import paddle.distributed as dist

from ..datasets.base import EvalSamples
from ..datasets.transforms import find_normalize
from ..utils.logger import logger
from .inference import inference
from .metrics import ConfusionMatrix, format_table
from .visual import colorize, denormalize, get_palette


def _samples(dataset, indices, num_workers, with_image=False):
    """Yield ``(img [1,3,H,W] tensor, label HxW numpy, extras)``: the ``inference`` keywords
    ``valid_shape`` and, ``with_image``, ``image`` (see ``Dataset.get_item``)."""
    def extras(valid, image):
        return dict(valid_shape=tuple(int(v) for v in valid), **({'image': image} if with_image else {}))

    if num_workers <= 0:
        # Paddle 3.2.2's single-process DataLoader hangs when the dataset raises (see
        # zoo.utils.cli); reading directly is equivalent for batch size 1 and fails cleanly.
        for i in indices:
            img, label, valid, image = dataset.get_item(i, with_image)
            yield paddle.to_tensor(img[None]), label, extras(valid, image)
        return
    loader = paddle.io.DataLoader(
        EvalSamples(dataset, with_image), batch_sampler=paddle.io.BatchSampler(sampler=_ListSampler(indices),
                                                                               batch_size=1),
        num_workers=num_workers, return_list=True)
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


def _class_names(dataset, num_classes):
    names = getattr(dataset, 'CLASSES', None)
    if names is not None and len(names) == num_classes:
        return list(names)
    return [str(i) for i in range(num_classes)]


def evaluate(model, dataset, test_kwargs=None, num_workers=0, print_detail=True, vdl_writer=None, iteration=None,
             num_vis=3):
    """Evaluate ``model`` on ``dataset``; returns a dict of metrics (fractions in [0, 1]).

    Keys: ``mIoU``, ``aAcc``, ``mAcc``, ``IoU`` and ``Acc`` (per-class arrays, NaN where undefined),
    ``class_names``, ``confusion_matrix``. ``test_kwargs`` are :func:`inference` keyword arguments
    (see :func:`zoo.engine.inference.parse_test_config`). With ``vdl_writer``, logs
    ``Evaluate/mIoU|aAcc|mAcc`` at step ``iteration`` and ``num_vis`` images (input | ground
    truth | prediction). The model is left in eval mode.
    """
    test_kwargs = dict(test_kwargs or {})
    num_classes = int(dataset.num_classes)
    ignore_index = int(getattr(dataset, 'ignore_index', 255))
    world = dist.get_world_size()
    rank = dist.get_rank()
    indices = list(range(rank, len(dataset), world))
    cm = ConfusionMatrix(num_classes, ignore_index)
    palette = get_palette(num_classes, dataset) if vdl_writer is not None else None
    vis = []
    with_image = test_kwargs.get('aug_resize') == 'image'  # TTA from the loaded image (mmseg's)
    if with_image:
        test_kwargs['normalize'] = find_normalize(getattr(dataset, 'transforms', None))
    model.eval()
    from tqdm import tqdm
    bar = tqdm(total=len(indices), desc='eval', file=sys.stderr, disable=rank != 0, dynamic_ncols=True,
               leave=False)
    try:
        with paddle.no_grad():
            for k, (img, label, extras) in enumerate(_samples(dataset, indices, num_workers, with_image)):
                logits = inference(model, img, ori_shape=label.shape[-2:],
                                   flip_swap_pairs=getattr(dataset, 'FLIP_PAIRS', ()), **extras, **test_kwargs)
                pred = paddle.argmax(logits, axis=1).numpy()[0]
                cm.update(pred, label)
                if palette is not None and k < num_vis and rank == 0:
                    vis.append((img.numpy()[0], label, pred))
                bar.update(1)
    finally:
        bar.close()
    cm.all_reduce()
    res = cm.compute()
    res['class_names'] = _class_names(dataset, num_classes)
    res['confusion_matrix'] = cm.mat
    if print_detail:
        logger.info(f'[EVAL] {len(dataset)} images; mIoU {res["mIoU"]:.4f} aAcc {res["aAcc"]:.4f} '
                    f'mAcc {res["mAcc"]:.4f}\n' + format_table(res, res['class_names']))
    if vdl_writer is not None and rank == 0:
        step = 0 if iteration is None else int(iteration)
        for key in ('mIoU', 'aAcc', 'mAcc'):
            vdl_writer.add_scalar(f'Evaluate/{key}', float(res[key]), step)
        transforms = getattr(dataset, 'transforms', None)
        for i, (img, label, pred) in enumerate(vis):
            vdl_writer.add_image(f'Evaluate/image_{i}', _panel(img, label, pred, palette, ignore_index, transforms),
                                 step, dataformats='HWC')
    return res


def _panel(img_chw, label, pred, palette, ignore_index, transforms):
    """input | ground truth | prediction, side by side at the label's size."""
    import cv2
    rgb = denormalize(img_chw, transforms)
    h, w = label.shape[-2:]
    if rgb.shape[:2] != (h, w):
        rgb = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.concatenate([rgb, colorize(label, palette, ignore_index), colorize(pred, palette, ignore_index)],
                          axis=1)
