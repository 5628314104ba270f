"""Our side of the training-step parity: a config's own model, loss, optimizer and schedule in
float64, from the protocol's reference-named weights converted by our importer.

Used by ``train_step_manifest.py`` (which records the figures) and by
``tests/test_train_step_parity.py`` (which re-checks them in ``make test``). One step is the
trainer's (``zoo/engine/trainer.py``, ``Trainer.train``): forward, ``compute_loss``, backward,
``optimizer.step``, ``clear_grad``, the iteration's lr, ``scheduler.step``, then the model's
``train_step_hook(labels, lr, iteration)`` (called once with ``labels=None`` before the first step
when the run starts at an iteration > 0, as the trainer does when it resumes).
"""
import os
import sys

import numpy as np
import paddle

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from train_step_common import DropoutMasks, evidence, make_batch, reference_weights  # noqa: E402


class PatchedDropout:
    """Paddle's ``nn.Dropout`` / ``nn.Dropout2D`` multiply by the protocol's masks while active
    (also used by the PaddleSeg reference side, which runs on Paddle too)."""

    def __init__(self, masks):
        self.masks = masks
        self.saved = {}

    def __enter__(self):
        masks = self.masks

        def forward(layer, x):
            if not layer.training or layer.p == 0:
                return x
            m = masks.mask(x.shape, layer.p, channelwise=isinstance(layer, paddle.nn.Dropout2D))
            return x * paddle.to_tensor(m, dtype=x.dtype)

        for cls in (paddle.nn.Dropout, paddle.nn.Dropout2D):
            self.saved[cls] = cls.forward
            cls.forward = forward
        return self

    def __exit__(self, *exc):
        for cls, fn in self.saved.items():
            cls.forward = fn


def build(config, opts=()):
    """``(cfg, model)`` of a config path in float64 (the caller restores the default dtype)."""
    from zoo.builder import build_model
    from zoo.utils.config import Config
    cfg = Config(os.path.join(ROOT, config), opts=list(opts))
    return cfg, build_model(cfg)


def import_reference(model, source, state):
    """Our model's state dict from a reference-named numpy state dict, through our importer."""
    from zoo.models.convert import convert
    return convert(model, source, state)


def velocity(optimizer, model):
    """``{our parameter name: momentum buffer}`` of a Paddle ``Momentum`` optimizer."""
    acc = optimizer._accumulators.get('velocity', {})
    out = {}
    for name, p in model.named_parameters():
        if p.stop_gradient:
            continue
        v = acc.get(p.name)
        out[name] = v.numpy().astype(np.float64) if v is not None else np.zeros(p.shape, np.float64)
    return out


def run(spec, reference_shapes):
    """Run our side of one family.

    ``spec``: the manifest's ``ours`` entry (config, opts, source, num_classes, start_iter,
    steps, batch seed, weight seed); ``reference_shapes``: ``{reference name: shape}`` of the
    reference state dict. Returns ``{'losses', 'loss_parts', 'lrs', 'evidence', 'dropout_calls'}``;
    ``evidence``: ``{'state', 'update', 'velocity'}`` of every tensor in our names
    (``train_step_common.evidence``; ``update``: state after - state before).
    """
    from zoo.builder import build_losses, build_lr_scheduler, build_optimizer
    from zoo.engine.trainer import compute_loss

    previous = paddle.get_default_dtype()
    paddle.set_default_dtype('float64')
    try:
        cfg, model = build(spec['config'], spec.get('opts', ()))
        weights = reference_weights(reference_shapes, spec.get('weight_seed', 0))
        if spec.get('perturb'):  # relative noise on every float weight: the run's own sensitivity
            g = np.random.default_rng(12345)
            weights = {k: (v * (1 + spec['perturb'] * g.standard_normal(v.shape)) if v.dtype.kind == 'f' else v)
                       for k, v in weights.items()}
        init = import_reference(model, spec['source'], weights)
        del weights
        model.set_state_dict(init)
        losses = build_losses(cfg)
        scheduler = build_lr_scheduler(cfg)
        optimizer = build_optimizer(cfg, model, scheduler)
        for _ in range(spec['start_iter']):
            scheduler.step()
        img, label = make_batch(spec['num_classes'], spec.get('batch_seed', 0), tuple(spec['batch_shape']))
        x = paddle.to_tensor(img, dtype='float64')
        y = paddle.to_tensor(label)
        hook = getattr(model, 'train_step_hook', None)
        if hook is not None and spec['start_iter']:  # as the trainer does for a resumed run
            hook(labels=None, lr=optimizer.get_lr(), iteration=spec['start_iter'])
        masks = DropoutMasks()
        out = {'losses': [], 'loss_parts': [], 'lrs': []}
        model.train()
        with PatchedDropout(masks):
            for step in range(spec['steps']):
                masks.start_step(step)
                iteration = spec['start_iter'] + step + 1
                total, parts = compute_loss(model(x), y, losses)
                total.backward()
                optimizer.step()
                optimizer.clear_grad()
                lr = optimizer.get_lr()
                scheduler.step()
                if hook is not None:
                    hook(labels=y, lr=lr, iteration=iteration)
                out['losses'].append(float(total))
                out['loss_parts'].append([float(p) for p in parts])
                out['lrs'].append(float(lr))
        out['evidence'] = {'state': {}, 'update': {}}
        for k, v in model.state_dict().items():
            v = v.numpy().astype(np.float64)
            out['evidence']['state'][k] = evidence(k, v)
            out['evidence']['update'][k] = evidence(k, v - init.pop(k))
        out['evidence']['velocity'] = {k: evidence(k, v) for k, v in velocity(optimizer, model).items()}
        out['dropout_calls'] = masks.log
        return out
    finally:
        paddle.set_default_dtype(previous)


def schedule(config, opts=()):
    """Our lr at every iteration of a config's run (float64)."""
    from zoo.builder import build_lr_scheduler
    from zoo.utils.config import Config
    cfg = Config(os.path.join(ROOT, config), opts=list(opts))
    sched = build_lr_scheduler(cfg)
    out = np.empty(cfg.iters)
    for t in range(cfg.iters):
        out[t] = sched.last_lr
        sched.step()
    return out
