"""Reference side of the training-step parity for RegSeg exp48_decoder26 (the official code).

Run with a torch 2.13 CPU environment that has PyYAML (the mmseg scratch environment does), from
a checkout of RolandGao/RegSeg (``REGSEG_SRC``, default /work/scratch/src/RegSeg):

    /work/scratch/envs/mmseg/bin/python tools/parity/train_step_regseg.py

The official ``configs/cityscapes_1000epochs.yaml``, ``train_utils.get_model`` /
``get_optimizer`` / ``get_loss_fun`` / ``get_lr_function`` and the step of ``train.py``'s
``train_one_epoch`` (forward, loss, ``zero_grad``, backward, ``optimizer.step``,
``lr_scheduler.step``) in float64 on CPU. ``torch.optim.lr_scheduler.LambdaLR`` over
``len(train_loader) * max_epochs`` iterations with ``len(train_loader) = 2975 // 8`` (the train
loader drops the last partial batch), started at ``START_ITER`` inside the 3000-iteration warmup.
Not copied on purpose, and measured in docs/weights.md: the official run's mixed precision
(``torch.cuda.amp``; CUDA only, off here).
"""
import os
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
REGSEG_SRC = os.environ.get('REGSEG_SRC', '/work/scratch/src/RegSeg')

import torch  # noqa: E402
import yaml  # noqa: E402

import train_step_reference as ref  # noqa: E402
from train_step_common import STEPS, make_batch  # noqa: E402

FAMILY = 'regseg'
CONFIG = 'configs/cityscapes_1000epochs.yaml'
ITERS_PER_EPOCH = 2975 // 8
START_ITER = 1500        # inside the 3000-iteration warmup
BATCH = (4, 3, 64, 64)


def _stub(name, **attrs):
    mod = types.ModuleType(name)
    mod.__path__ = []
    mod.__dict__.update(attrs)
    sys.modules.setdefault(name, mod)


def _import_official():
    """The official ``train_utils``. What its imports need and these runs never call is stubbed:
    ``torchvision.ops`` (ablation blocks), the data pipeline module (``data``: datasets, PIL,
    scipy, pycocotools, tqdm) and the competitors' models."""
    def unused(*a, **k):
        raise RuntimeError('stub: not used by the training-step parity')
    _stub('torchvision')
    _stub('torchvision.ops', DeformConv2d=unused)
    _stub('data', **{n: unused for n in ('get_cityscapes', 'get_pascal_voc', 'get_camvid', 'build_val_transform',
                                         'Cityscapes', 'get_mapillary', 'get_coco')})
    _stub('competitors_models')
    _stub('competitors_models.hardnet', hardnet=unused)
    _stub('competitors_models.DDRNet_Reimplementation', get_ddrnet_23=unused, get_ddrnet_23slim=unused)
    sys.path.insert(0, REGSEG_SRC)
    import train_utils
    return train_utils


def run(variant):
    tu = _import_official()
    with open(os.path.join(REGSEG_SRC, CONFIG)) as f:
        config = yaml.safe_load(f)
    model = tu.get_model(config).double()
    ref.load_weights(model)
    model.train()
    optimizer = tu.get_optimizer(model, config)
    ref.round_hyperparameters(optimizer, model, variant)
    loss_fun = tu.get_loss_fun(config)
    total_iterations = ITERS_PER_EPOCH * config['max_epochs']
    lr_function = tu.get_lr_function(config, total_iterations)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_function)
    for _ in range(START_ITER):
        lr_scheduler.step()
    shadow = ref.BiasedVarianceShadow(model)
    ref.patch_dropout()

    img, label = make_batch(config['num_classes'], shape=BATCH)
    image, target = torch.from_numpy(img), torch.from_numpy(label)
    losses, lrs = [], []
    for step in range(STEPS):
        ref.MASKS.start_step(step)
        lrs.append(optimizer.param_groups[0]['lr'])
        output = model(image)
        loss = loss_fun(output, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        lr_scheduler.step()
        losses.append(float(loss.detach()))

    # the whole schedule: LambdaLR's own values on a one-parameter optimizer
    dummy = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=config['lr'])
    sched = torch.optim.lr_scheduler.LambdaLR(dummy, lr_function)
    schedule = []
    for _ in range(total_iterations):
        schedule.append(dummy.param_groups[0]['lr'])
        dummy.step()
        sched.step()

    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    record = {'family': FAMILY, 'reference': 'RolandGao/RegSeg (official training code)', 'config': CONFIG,
              'source': 'regseg', 'num_classes': config['num_classes'], 'start_iter': START_ITER, 'steps': STEPS,
              'batch_shape': list(BATCH),
              'losses': losses, 'loss_parts': [[x] for x in losses], 'lrs': lrs, 'iters': total_iterations,
              'optimizer': f"SGD lr {config['lr']} momentum {config['momentum']} wd {config['weight_decay']} "
                           f"bn_weight_decay {config['bn_weight_decay']}; poly {config['poly_power']}, warmup "
                           f"{config['warmup_iters']} x {config['warmup_factor']}",
              'note_mixed_precision': f"official config mixed_precision: {config['mixed_precision']} (CUDA autocast; "
                                      'off here)'}
    ref.save(FAMILY, variant, state=state, momentum=ref.momentum_buffers(model, optimizer),
             biased_var=shadow.arrays(), record=record, schedule=schedule)


if __name__ == '__main__':
    torch.set_num_threads(1)
    for v in ref.VARIANTS:
        run(v)
