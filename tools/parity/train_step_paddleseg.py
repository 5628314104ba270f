"""Reference side of the training-step parity for DeepLabV3 ResNet50_vd (PaddleSeg 2.8).

Run in the PaddleSeg scratch environment (paddlepaddle 3.2.2, paddleseg 2.8.0, numpy<2):

    /work/scratch/envs/paddleseg/bin/python tools/parity/train_step_paddleseg.py

PaddleSeg's own ``SegBuilder`` builds the model, loss, optimizer (``SGD`` + momentum becomes
``Momentum``) and ``PolynomialDecay`` schedule from the values of its
``configs/deeplabv3/deeplabv3_resnet50_os8_cityscapes_1024x512_80k.yml`` and
``configs/_base_/cityscapes.yml`` (``CONFIG`` below; no ImageNet download), in float64; the step
is ``paddleseg/core/train.py``'s: ``loss_computation``, ``sum``, backward, ``optimizer.step``,
``lr_sche.step``, ``clear_gradients``. PaddleSeg is Paddle, so its kernels are ours; one named
difference is removed in the run ours must match and restored in the ``published_loss_reduction``
run: PaddleSeg's cross-entropy averages as ``mean(loss * mask) / (mean(mask) + 1e-8)`` with a float32
mask; the run ours must match reduces as ``sum(loss * mask) / (sum(mask) + 1e-8)`` in the loss's dtype
(``_reductions``). PaddleSeg 2.8's reduction as published does not run on Paddle 3.2.2 (its int64
``ones_like(label)`` coefficient fails type promotion); the float32 ones used instead change no value.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
import paddle  # noqa: E402
import yaml  # noqa: E402

from train_step_common import OUT_ROOT, STEPS, DropoutMasks, make_batch, reference_weights, save_run  # noqa: E402
from train_step_ours import PatchedDropout, velocity  # noqa: E402

FAMILY = 'deeplabv3_paddleseg'
BATCH = (8, 3, 32, 32)   # the ASPP image-pool BatchNorm normalises one value per image
ITERS = 80000
START_ITER = ITERS - 3   # the run's last iterations (see train_step_mmseg.py)
# PaddleSeg 2.8: configs/deeplabv3/deeplabv3_resnet50_os8_cityscapes_1024x512_80k.yml + _base_/cityscapes.yml
CONFIG = {
    'batch_size': 2, 'iters': ITERS,
    'train_dataset': {'type': 'Cityscapes', 'dataset_root': 'data/cityscapes', 'transforms': [], 'mode': 'train'},
    'model': {'type': 'DeepLabV3', 'backbone': {'type': 'ResNet50_vd', 'output_stride': 8, 'multi_grid': [1, 2, 4],
                                                 'pretrained': None},
              'backbone_indices': [3], 'aspp_ratios': [1, 12, 24, 36], 'aspp_out_channels': 256,
              'align_corners': False, 'pretrained': None, 'num_classes': 19},
    'optimizer': {'type': 'SGD', 'momentum': 0.9, 'weight_decay': 4.0e-5},
    'lr_scheduler': {'type': 'PolynomialDecay', 'learning_rate': 0.01, 'end_lr': 0, 'power': 0.9},
    'loss': {'types': [{'type': 'CrossEntropyLoss'}], 'coef': [1]},
}
VARIANTS = {
    'paddle_kernel': "PaddleSeg's recipe with its cross-entropy reduced as ours: sum(loss) / (count + 1e-8) in the "
                     "loss's dtype",
    'published_loss_reduction': "PaddleSeg's cross-entropy reduction as published: mean(loss * mask) / (mean(mask) + "
                                '1e-8) with a float32 mask (a float32 mean of the mask, 1e-8 added to the mean)',
}


def _reductions():
    """PaddleSeg 2.8's ``CrossEntropyLoss._post_process_loss`` for the unweighted, all-pixels case
    (every seed config's), two ways: as published -- ``mean(loss * mask) / (mean(mask) + EPS)`` with
    a float32 mask; its int64 ``coef = ones_like(label)`` fails Paddle 3.2.2's type promotion
    (float32 * int64), so the ones are float32 here, which changes no value -- and as ours,
    ``sum(loss * mask) / (sum(mask) + EPS)`` in the loss's dtype."""
    from paddleseg.models.losses.cross_entropy_loss import CrossEntropyLoss
    original = getattr(CrossEntropyLoss, '_published_post_process_loss', CrossEntropyLoss._post_process_loss)
    CrossEntropyLoss._published_post_process_loss = original

    def checked(self, label, semantic_weights):
        if self.weight is not None or semantic_weights is not None or self.top_k_percent_pixels != 1.0:
            raise NotImplementedError('only the unweighted, all-pixels reduction is exercised here')

    def published(self, logit, label, semantic_weights, loss):
        checked(self, label, semantic_weights)
        mask = paddle.cast(label != self.ignore_index, 'float32') if self.avg_non_ignore else \
            paddle.ones(label.shape, 'float32')
        if loss.ndim > mask.ndim:
            loss = paddle.squeeze(loss, axis=-1)
        return paddle.mean(loss * mask) / (paddle.mean(mask) + self.EPS)

    def as_ours(self, logit, label, semantic_weights, loss):
        checked(self, label, semantic_weights)
        if loss.ndim > label.ndim:
            loss = paddle.squeeze(loss, axis=-1)
        mask = (label != self.ignore_index).astype(loss.dtype) if self.avg_non_ignore else paddle.ones_like(loss)
        return (loss * mask).sum() / (mask.sum() + self.EPS)
    return CrossEntropyLoss, published, as_ours


def run(variant):
    import paddleseg
    from paddleseg.core.train import loss_computation
    from paddleseg.cvlibs import Config, SegBuilder

    loss_cls, published, as_ours = _reductions()
    loss_cls._post_process_loss = as_ours if variant == 'paddle_kernel' else published
    out = os.path.join(OUT_ROOT, FAMILY, variant)
    os.makedirs(out, exist_ok=True)
    cfg_path = os.path.join(out, 'paddleseg_config.yml')
    with open(cfg_path, 'w') as f:
        yaml.safe_dump(CONFIG, f)
    paddle.set_default_dtype('float64')
    builder = SegBuilder(Config(cfg_path))
    model = builder.model
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.set_state_dict(reference_weights(shapes))
    model.train()
    losses_cfg = builder.loss
    optimizer = builder.optimizer
    lr_sche = optimizer._learning_rate
    for _ in range(START_ITER):
        lr_sche.step()

    img, label = make_batch(CONFIG['model']['num_classes'], shape=BATCH)
    images = paddle.to_tensor(img, dtype='float64')
    labels = paddle.to_tensor(label)
    masks = DropoutMasks()
    losses, parts, lrs = [], [], []
    with PatchedDropout(masks):
        for step in range(STEPS):
            masks.start_step(step)
            logits_list = model(images)
            loss_list = loss_computation(logits_list=logits_list, labels=labels, edges=None, losses=losses_cfg)
            loss = sum(loss_list)
            loss.backward()
            optimizer.step()
            lr = optimizer.get_lr()
            lr_sche.step()
            model.clear_gradients()
            losses.append(float(loss))
            parts.append([float(x) for x in loss_list])
            lrs.append(float(lr))

    # the whole schedule: PaddleSeg's own PolynomialDecay at every iteration
    sched = SegBuilder(Config(cfg_path)).lr_scheduler
    schedule = []
    for _ in range(ITERS):
        schedule.append(float(sched.last_lr))
        sched.step()

    state = {k: v.numpy().astype(np.float64) for k, v in model.state_dict().items()}
    record = {'family': FAMILY, 'reference': f'PaddleSeg {paddleseg.__version__} (paddle {paddle.__version__})',
              'config': 'configs/deeplabv3/deeplabv3_resnet50_os8_cityscapes_1024x512_80k.yml', 'source': 'paddleseg',
              'num_classes': CONFIG['model']['num_classes'], 'start_iter': START_ITER, 'steps': STEPS,
              'batch_shape': list(BATCH), 'losses': losses, 'loss_parts': parts, 'lrs': lrs, 'iters': ITERS,
              'optimizer': str(CONFIG['optimizer']), 'variant_note': VARIANTS[variant]}
    save_run(FAMILY, variant, state=state, momentum=velocity(optimizer, model), record=record, schedule=schedule,
             dropout_calls=masks.log, versions={'paddle': paddle.__version__, 'paddleseg': paddleseg.__version__})


if __name__ == '__main__':
    for v in sys.argv[1:] or VARIANTS:
        run(v)
