"""Reference side of the training-step parity for MCIBI R-50-D8 (sssegmentation 1.7.0).

Run in the sssegmentation scratch environment (torch 2.13 CPU, sssegmentation 1.7.0 --no-deps,
torchvision stubbed), with the release's configs from its source tree (commit a191ca43):

    /work/scratch/envs/ssseg/bin/python tools/parity/train_step_sssegmentation.py

``mcibi_deeplabv3_resnet50os8_ade20k.py`` as published (memory loss on, as for ADE20K), SyncBN as
BatchNorm2d (one process), no ImageNet download; float64. The loop is sssegmentation's
``train.py``: ``scheduler.updatelr()``, ``zero_grad``, ``segmentor(data_meta, learning_rate=...,
epoch=...)`` (the memory update happens inside, before the losses), ``backward``,
``scheduler.step()``. It starts at the last iteration of epoch 1 (``START_ITER = 1262`` of 1263
per epoch: 20210 // 16), so the memory loss (``epoch > 1``) is off in step 1 and on in steps 2
and 3. sssegmentation marks ignored pixels -100; the batch's 255s are given as -100.
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
from train_step_common import BATCH_SHAPE, IGNORE_INDEX, STEPS, make_batch  # noqa: E402

FAMILY = 'mcibi'
CONFIG = 'ssseg.configs.mcibi.mcibi_deeplabv3_resnet50os8_ade20k'
ITERS_PER_EPOCH = 20210 // 16   # ADE20K train images // total batch (drop_last)
START_ITER = ITERS_PER_EPOCH - 1


def _plain_bn(node):
    if isinstance(node, dict):
        if node.get('type') == 'SyncBatchNorm':
            node['type'] = 'BatchNorm2d'
        for v in node.values():
            _plain_bn(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _plain_bn(v)


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
    _plain_bn(cfg)
    cfg['backbone']['pretrained'] = False
    model = BuildSegmentor(segmentor_cfg=copy.deepcopy(cfg), mode='TRAIN').double()
    ref.load_weights(model)
    model.train()
    optimizer = BuildOptimizer(model, copy.deepcopy(cfg['scheduler']['optimizer']))
    ref.round_hyperparameters(optimizer, model, variant)
    scheduler = _scheduler(optimizer, cfg)
    scheduler.cur_iter = START_ITER
    shadow = ref.BiasedVarianceShadow(model)
    ref.patch_dropout()

    img, label = make_batch(cfg['num_classes'])
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
              'steps': STEPS, 'batch_shape': list(BATCH_SHAPE), 'losses': losses, 'loss_parts': parts, 'lrs': lrs,
              'optimizer': str(cfg['scheduler']), 'iters': ITERS_PER_EPOCH * cfg['scheduler']['max_epochs'],
              'ssseg_file': ssseg.__file__}
    ref.save(FAMILY, variant, state=state, momentum=ref.momentum_buffers(model, optimizer),
             biased_var=shadow.arrays(), record=record, schedule=whole_schedule(cfg))


if __name__ == '__main__':
    torch.set_num_threads(1)
    for v in ref.VARIANTS:
        run(v)
