"""Reference side of the training-step parity for MCIBI R-50-D8 (sssegmentation 1.7.0).

Run in the sssegmentation scratch environment (torch 2.13 CPU, sssegmentation 1.7.0 --no-deps,
torchvision stubbed), with the release's configs from its source tree (commit a191ca43):

    /work/scratch/envs/ssseg/bin/python tools/parity/train_step_sssegmentation.py

``mcibi_deeplabv3_resnet50os8_ade20k.py`` as published (memory loss on, as for ADE20K), SyncBN as
BatchNorm2d (one process), no ImageNet download; float64. The loop is sssegmentation's
``train.py``: ``scheduler.updatelr()``, ``zero_grad``, ``segmentor(data_meta, learning_rate=...,
epoch=...)`` (the memory update happens inside, before the losses), ``backward``,
``scheduler.step()``. It runs the last three iterations of the run (1263 per epoch: 20210 // 16),
where the memory loss (``epoch > 1``) is on. sssegmentation marks ignored pixels -100; the batch's
255s are given as -100. Variants: ``paddle_kernel`` (what ours must equal: float32 kernel scalars, memory updated on a copy),
``exact`` (the config's doubles), ``in_place_memory`` (the published in-place memory update).
"""
import copy
import importlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), 'tests', 'manifests'))
SSSEG_SRC = os.environ.get('SSSEG_SRC', '/work/scratch/src/sssegmentation-1.7.0')

from ssseg_env import stub_torchvision  # noqa: E402

stub_torchvision()
sys.path.insert(0, SSSEG_SRC)  # the release's source tree: its code and its configs

import numpy as np  # noqa: E402
import torch  # noqa: E402

import train_step_reference as ref  # noqa: E402
from train_step_common import IGNORE_INDEX, STEPS, make_batch, replace_type  # noqa: E402

FAMILY = 'mcibi'
CONFIG = 'ssseg.configs.mcibi.mcibi_deeplabv3_resnet50os8_ade20k'
ITERS_PER_EPOCH = 20210 // 16   # ADE20K train images // total batch (drop_last)
MAX_EPOCHS = 130
# the run's last three iterations (lr ~ min_lr): at the end of epoch 1 (lr 0.0093) one step of a
# randomly initialised R-50 moves it so far that float64 rounding differences grow ~1e5-fold in
# two steps (docs/weights.md); START_ITER=1262 in the environment reproduces the epoch-1 -> 2
# boundary (memory loss off, then on) measured there.
START_ITER = int(os.environ.get('START_ITER', ITERS_PER_EPOCH * MAX_EPOCHS - 3))
BATCH = (8, 3, 32, 32)          # 8 images: the ASPP image-pool BatchNorm normalises one value per image
IN_PLACE_NOTE = ('sssegmentation updates the memory in place inside the forward pass (through .data, unseen by '
                 'autograd), after the memory read and before the losses: the backward of the read '
                 '(softmax(stage-1 logits) x memory) and the memory loss see the updated memory; ours updates '
                 'it after the optimizer step, so both use the memory the forward pass read')
VARIANTS = {**ref.VARIANTS, 'in_place_memory': IN_PLACE_NOTE}
VARIANTS['paddle_kernel'] += '; the memory updated on a copy (see in_place_memory)'


def _memory_updates(in_place):
    """``in_place`` is sssegmentation as published; otherwise ``FeaturesMemory.update`` first moves
    the memory to a new tensor, so what the forward pass read (and returned for the memory loss)
    keeps its values."""
    from ssseg.modules.models.segmentors.mcibi.memory import FeaturesMemory
    original = getattr(FeaturesMemory, '_published_update', FeaturesMemory.update)
    FeaturesMemory._published_update = original

    def update_a_copy(self, *args, **kwargs):
        self.memory.data = self.memory.data.clone()
        return original(self, *args, **kwargs)
    FeaturesMemory.update = original if in_place else update_a_copy


def _scheduler(optimizer, cfg):
    from ssseg.modules import BuildScheduler
    sched_cfg = copy.deepcopy(cfg['scheduler'])
    sched_cfg.update({'lr': cfg['scheduler']['optimizer']['lr'], 'iters_per_epoch': ITERS_PER_EPOCH,
                      'params_rules': cfg['scheduler']['optimizer']['params_rules']})
    return BuildScheduler(optimizer=optimizer, scheduler_cfg=sched_cfg)


def whole_schedule(cfg):
    """sssegmentation's own ``updatelr()`` at every iteration of the run."""
    from ssseg.modules import BuildOptimizer
    dummy = torch.nn.Linear(1, 1)
    sched = _scheduler(BuildOptimizer(dummy, copy.deepcopy(cfg['scheduler']['optimizer'])), cfg)
    out = []
    for _ in range(sched.max_iters):
        out.append(sched.updatelr())
        sched.cur_iter += 1
    return out


def run(variant):
    import ssseg
    from ssseg.modules import BuildOptimizer, BuildSegmentor, SSSegInputStructure

    cfg = copy.deepcopy(importlib.import_module(CONFIG).SEGMENTOR_CFG)
    replace_type(cfg, 'SyncBatchNorm', 'BatchNorm2d')  # one process: same parameters and momentum
    cfg['backbone']['pretrained'] = False
    model = BuildSegmentor(segmentor_cfg=copy.deepcopy(cfg), mode='TRAIN').double()
    ref.load_weights(model)
    model.train()
    optimizer = BuildOptimizer(model, copy.deepcopy(cfg['scheduler']['optimizer']))
    ref.round_hyperparameters(optimizer, model, 'exact' if variant == 'exact' else 'paddle_kernel')
    _memory_updates(in_place=variant == 'in_place_memory')
    scheduler = _scheduler(optimizer, cfg)
    scheduler.cur_iter = START_ITER
    shadow = ref.BiasedVarianceShadow(model)
    ref.patch_dropout()

    img, label = make_batch(cfg['num_classes'], shape=BATCH)
    images = torch.from_numpy(img)
    targets = torch.from_numpy(np.where(label == IGNORE_INDEX, -100, label))
    losses, parts, lrs = [], [], []
    for step in range(STEPS):
        ref.MASKS.start_step(step)
        epoch = scheduler.cur_iter // ITERS_PER_EPOCH + 1
        lr = scheduler.updatelr()
        data_meta = SSSegInputStructure(mode='TRAIN', images=images, seg_targets=targets)
        optimizer.zero_grad()
        loss, log = model(data_meta, learning_rate=lr, epoch=epoch).getsetvariables().values()
        loss.backward()
        scheduler.step()
        losses.append(float(loss.detach()))
        parts.append({k: float(v) for k, v in log.items()})
        lrs.append(lr)

    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    record = {'family': FAMILY, 'reference': 'sssegmentation 1.7.0 (a191ca43)', 'config': CONFIG,
              'source': 'sssegmentation', 'num_classes': cfg['num_classes'], 'start_iter': START_ITER,
              'steps': STEPS, 'batch_shape': list(BATCH), 'losses': losses, 'loss_parts': parts, 'lrs': lrs,
              'optimizer': str(cfg['scheduler']), 'iters': ITERS_PER_EPOCH * cfg['scheduler']['max_epochs'],
              'ssseg_file': ssseg.__file__, 'variant_note': VARIANTS[variant]}
    ref.save(FAMILY, variant, state=state, momentum=ref.momentum_buffers(model, optimizer),
             biased_var=shadow.arrays(), record=record, schedule=whole_schedule(cfg))


if __name__ == '__main__':
    torch.set_num_threads(1)
    for v in sys.argv[1:] or VARIANTS:
        run(v)
