"""Reference side of the training-step parity for the mmsegmentation 1.2.2 families.

Run in the mmseg scratch environment (torch 2.13 CPU, mmcv-lite 2.1.0, mmengine, mmsegmentation):

    /work/scratch/envs/mmseg/bin/python tools/parity/train_step_mmseg.py fast_scnn dmnet deeplabv3

For each family: mmseg's own config (shipped in the package), its model in float64 (SyncBN as BN:
one process), the protocol's weights (``train_step_common``), mmengine's own optimizer wrapper
and ``PolyLR`` built from the config, advanced to the family's start iteration; then ``STEPS`` iterations of
``model.loss`` -> ``parse_losses`` -> ``OptimWrapper.update_params`` -> scheduler step, as
mmengine's ``IterBasedTrainLoop`` + ``ParamSchedulerHook`` do; twice: with momentum and weight
decay, BatchNorm momentum and epsilon as the float32 values Paddle's kernels apply, and with the
config's doubles (``train_step_reference.round_hyperparameters``). Writes the after-step state and the
whole schedule (every iteration of ``train_cfg.max_iters``) for ``train_step_manifest.py``.
"""
import os
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import train_step_reference as ref  # noqa: E402
from train_step_common import STEPS, make_batch, replace_type  # noqa: E402

# config, first iteration of the three steps, batch. The R-50-D8 runs take the run's last three
# iterations (the last at eta_min) on 8 crops of 32x32: at lr 0.01 one step of a randomly
# initialised R-50-D8 moves its stem by ~30 %, and with 2 images the ASPP image-pool BatchNorm
# normalises 2 values per channel, whose variance can be below its epsilon; the next steps then
# amplify float64 rounding differences ~1e5-fold (docs/weights.md, "Training recipe parity").
FAMILIES = {
    'fast_scnn': ('fastscnn/fast_scnn_8xb4-160k_cityscapes-512x1024.py', 1000, (4, 3, 64, 64)),
    'dmnet': ('dmnet/dmnet_r50-d8_4xb2-80k_cityscapes-512x1024.py', 80000 - 3, (8, 3, 32, 32)),
    'deeplabv3': ('deeplabv3/deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024.py', 80000 - 3, (8, 3, 32, 32)),
}
NUM_CLASSES = 19


def _stub_mmcv_ext():
    """mmseg's register_all_modules imports mmcv._ext (compiled ops none of these models use):
    a module whose every public attribute is a function that raises when called."""
    def attribute(name):
        if name.startswith('__'):
            raise AttributeError(name)
        return lambda *a, **k: sys.exit(f'mmcv._ext.{name} called: compiled mmcv ops are not installed')
    stub = types.ModuleType('mmcv._ext')
    stub.__getattr__ = attribute
    sys.modules['mmcv._ext'] = stub


def _float64_sigmoid_targets():
    """mmseg's sigmoid cross-entropy passes ``label.float()`` (float32) as the target, and torch's
    ``binary_cross_entropy_with_logits`` then returns float32 even for float64 logits; cast the
    target to the logits' dtype instead, so the float64 run stays float64 (float32 training is
    unchanged)."""
    import mmseg.models.losses.cross_entropy_loss as ce
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    class _F:
        def __getattr__(self, name):
            return getattr(torch.nn.functional, name)

        @staticmethod
        def binary_cross_entropy_with_logits(pred, target, *args, **kwargs):
            return bce(pred, target.to(pred.dtype), *args, **kwargs)
    ce.F = _F()


def _schedulers(optim_wrapper, cfg):
    from mmengine.registry import PARAM_SCHEDULERS
    return [PARAM_SCHEDULERS.build(dict(s, optimizer=optim_wrapper)) for s in cfg.param_scheduler]


def whole_schedule(cfg):
    """mmengine's own lr at every iteration of the run (a one-parameter model, same wrapper)."""
    from mmengine.optim import build_optim_wrapper
    dummy = torch.nn.Linear(1, 1)
    wrapper = build_optim_wrapper(dummy, cfg.optim_wrapper)
    scheds = _schedulers(wrapper, cfg)
    out = []
    for _ in range(cfg.train_cfg.max_iters):
        out.append(wrapper.optimizer.param_groups[0]['lr'])
        for s in scheds:
            s.step()
    return out


def run(family, variant):
    _stub_mmcv_ext()
    import mmseg
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.structures import PixelData
    from mmseg.registry import MODELS
    from mmseg.structures import SegDataSample
    from mmseg.utils import register_all_modules

    register_all_modules()
    _float64_sigmoid_targets()
    config, start_iter, batch_shape = FAMILIES[family]
    cfg_path = os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'configs', config)
    cfg = Config.fromfile(cfg_path)
    model_cfg = cfg.model.to_dict()
    replace_type(model_cfg, 'SyncBN', 'BN')  # one process: same parameters and momentum
    model_cfg.pop('pretrained', None)
    model_cfg['backbone'].pop('init_cfg', None)
    model = MODELS.build(model_cfg).double()
    ref.load_weights(model)
    model.train()

    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    ref.round_hyperparameters(wrapper.optimizer, model, variant)
    scheds = _schedulers(wrapper, cfg)
    for _ in range(start_iter):
        for s in scheds:
            s.step()
    shadow = ref.BiasedVarianceShadow(model)
    ref.patch_dropout()

    img, label = make_batch(NUM_CLASSES, shape=batch_shape)
    inputs = torch.from_numpy(img)
    samples = []
    for i in range(img.shape[0]):
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=torch.from_numpy(label[i][None]))
        s.set_metainfo({'img_shape': img.shape[2:], 'ori_shape': img.shape[2:], 'pad_shape': img.shape[2:]})
        samples.append(s)

    losses, parts, lrs = [], [], []
    for step in range(STEPS):
        ref.MASKS.start_step(step)
        lrs.append(wrapper.optimizer.param_groups[0]['lr'])
        loss_dict = model.loss(inputs, samples)
        total, log_vars = model.parse_losses(loss_dict)
        wrapper.update_params(total)
        for s in scheds:
            s.step()
        losses.append(float(total.detach()))
        parts.append({k: float(v) for k, v in loss_dict.items() if 'loss' in k})

    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    record = {'family': family, 'reference': f'mmsegmentation {mmseg.__version__}', 'config': config,
              'source': 'mmseg', 'num_classes': NUM_CLASSES, 'start_iter': start_iter, 'steps': STEPS,
              'batch_shape': list(batch_shape),
              'losses': losses, 'loss_parts': parts, 'lrs': lrs,
              'optimizer': str(cfg.optim_wrapper.to_dict()), 'param_scheduler': str(cfg.param_scheduler),
              'iters': cfg.train_cfg.max_iters}
    ref.save(family, variant, state=state, momentum=ref.momentum_buffers(model, wrapper.optimizer),
             biased_var=shadow.arrays(), record=record, schedule=whole_schedule(cfg))


if __name__ == '__main__':
    torch.set_num_threads(1)
    for fam in sys.argv[1:] or list(FAMILIES):
        for variant in ref.VARIANTS:
            run(fam, variant)
