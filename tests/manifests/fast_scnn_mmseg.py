"""Reference manifest and output parity for Fast-SCNN against mmsegmentation.

Run in the scratch reference environment (torch + mmsegmentation 1.2.2 + paddlepaddle),
NOT part of ``make test``:

    /tmp/refenv/bin/python tests/manifests/fast_scnn_mmseg.py

1. Builds mmseg's segmentor from its own config
   ``configs/fastscnn/fast_scnn_8xb4-160k_cityscapes-512x1024.py`` (shipped in the package
   under ``mmseg/.mim/configs``) and records every state-dict key and shape.
2. Parity: random weights (random BN affine parameters too), BN running statistics
   calibrated by train-mode forward passes with a cumulative average (momentum=None), then
   eval mode; the state dict goes through our mmseg importer into ``zoo``'s FastSCNN and the
   logits of the decode head and both auxiliary heads are compared on a 1x3x512x1024 input
   (and on an odd 1x3x333x517 input).
3. The FCN heads alone (``zoo/models/heads/fcn_head.py``): mmseg ``FCNHead`` and
   ``DepthwiseSeparableFCNHead`` in the variants other models reuse (``HEAD_CASES``: conv_cat,
   dilation, num_convs 0/1/2) -- keys, shapes and eval-mode output difference.
4. Writes ``fast_scnn_mmseg.json`` next to this file: keys, shapes, provenance, differences.

With ``--outputs`` (torch and mmseg only, no Paddle) it writes ``fast_scnn_mmseg.npz`` instead:
mmseg's segmentor and the four heads with seeded float64 weights (``seeded.py``), their
seeded inputs and outputs, which ``tests/test_fast_scnn.py`` and ``tests/test_fcn_head.py``
compare with ours on every run:

    /work/scratch/envs/mmseg/bin/python tests/manifests/fast_scnn_mmseg.py --outputs

mmseg's ``register_all_modules`` imports ``mmcv._ext`` (compiled ops); Fast-SCNN uses none of
them, so a stub module whose attributes raise is registered first (see PLATFORM.md).
"""
import datetime
import json
import os
import platform
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, 'fast_scnn_mmseg.json')
CONFIG = 'fastscnn/fast_scnn_8xb4-160k_cityscapes-512x1024.py'
NUM_CLASSES = 19
TARGET = 1e-4


def _stub_mmcv_ext():
    class _Stub(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith('__'):
                raise AttributeError(name)

            def _fail(*a, **k):
                raise RuntimeError(f'mmcv._ext.{name} is a stub (compiled mmcv ops are not installed)')

            return _fail

    sys.modules['mmcv._ext'] = _Stub('mmcv._ext')


def build_reference():
    _stub_mmcv_ext()
    import mmseg
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules()
    cfg_path = os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'configs', CONFIG)
    cfg = Config.fromfile(cfg_path)
    model_cfg = cfg.model
    # SyncBN needs a process group in train mode; plain BN has the same parameters/buffers.
    norm = dict(type='BN', requires_grad=True, momentum=0.01)
    model_cfg.backbone.norm_cfg = norm
    model_cfg.decode_head.norm_cfg = norm
    for h in model_cfg.auxiliary_head:
        h.norm_cfg = norm
    model = MODELS.build(model_cfg)
    return model, cfg_path, mmseg.__version__


def randomize_and_calibrate(model, torch, seed=0):
    """Random weights, random BN affine; running stats = cumulative average of train batches."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('bn.weight'):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif name.endswith('bn.bias'):
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            # conv weights keep mmseg's own initialization (Kaiming / N(0, 0.01))
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
    model.train()
    with torch.no_grad():
        for _ in range(3):
            x = torch.randn(2, 3, 256, 512, generator=g)
            feats = model.backbone(x)
            model.decode_head(feats)
            for h in model.auxiliary_head:
                h(feats)
    model.eval()


# (name, mmseg type, kwargs) -- kwargs valid for both mmseg and zoo heads
HEAD_CASES = [
    ('fcn_concat_dilated', 'FCNHead',
     dict(in_channels=24, channels=16, num_classes=5, num_convs=2, kernel_size=3, dilation=2, concat_input=True)),
    ('fcn_aux_1conv', 'FCNHead',
     dict(in_channels=24, channels=8, num_classes=5, num_convs=1, concat_input=False)),
    ('fcn_no_convs', 'FCNHead',
     dict(in_channels=16, channels=16, num_classes=5, num_convs=0, concat_input=True)),
    ('sepfcn_concat', 'DepthwiseSeparableFCNHead',
     dict(in_channels=24, channels=16, num_classes=5, num_convs=2, concat_input=True)),
]


def head_parity(torch, paddle, np):
    from mmseg.registry import MODELS as MM
    from zoo.models.convert import check_mapping, torch_key
    from zoo.utils.registry import HEADS

    out = {}
    g = torch.Generator().manual_seed(2)
    for name, kind, kw in HEAD_CASES:
        ref = MM.build(dict(type=kind, norm_cfg=dict(type='BN'), **kw))
        keys = {k: list(v.shape) for k, v in ref.state_dict().items()}
        for m in ref.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                with torch.no_grad():
                    m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                    m.bias.copy_(0.2 * torch.randn(m.bias.shape, generator=g))
                    m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                    m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
        with torch.no_grad():  # N(0, 0.01) would make every difference look tiny
            ref.conv_seg.weight.copy_(torch.randn(ref.conv_seg.weight.shape, generator=g))
        ref.eval()
        ours = HEADS[kind](**kw)
        sd = {torch_key(k): v.numpy() for k, v in ref.state_dict().items() if torch_key(k) is not None}
        check_mapping(sd, ours)
        ours.set_state_dict(sd)
        ours.eval()
        x = torch.randn(2, kw['in_channels'], 13, 17, generator=g)
        with torch.no_grad():
            a = ref.forward([x]).numpy()  # mmseg heads take the list of backbone features
        with paddle.no_grad():
            b = ours([paddle.to_tensor(x.numpy())]).numpy()
        diff = float(np.abs(a - b).max())
        out[name] = {'type': kind, 'kwargs': kw, 'state_dict': keys, 'max_abs_diff': diff,
                     'ref_abs_max': float(np.abs(a).max()),
                     'output_shape': list(a.shape)}
        print(f'head {name} ({kind}): {len(keys)} entries, max|diff| {diff:.3g} (|ref| max {np.abs(a).max():.3g})')
    return out


def torch_logits(model, x, torch):
    import torch.nn.functional as F
    with torch.no_grad():
        feats = model.backbone(x)
        outs = [model.decode_head(feats)] + [h(feats) for h in model.auxiliary_head]
        return [F.interpolate(o, size=x.shape[2:], mode='bilinear', align_corners=False).numpy() for o in outs]


def paddle_logits(ours, x_np, paddle):
    from zoo.models.layers import input_hw, resize
    x = paddle.to_tensor(x_np)
    with paddle.no_grad():
        main = ours(x)[0]
        feats = ours.backbone(x)
        aux = [resize(h(feats), input_hw(x), align_corners=False) for h in ours.auxiliary_head]
    return [main.numpy()] + [a.numpy() for a in aux]


def stored_outputs():
    """Seeded float64 weights, a 1x3x128x256 input: the decode head's and both auxiliary heads'
    logits (resized to the input), and each of ``HEAD_CASES`` on a 2xCx13x17 input."""
    import torch
    from mmseg.registry import MODELS as MM
    from seeded import fill_torch_model, save_outputs, seeded_input

    ref, cfg_path, mmseg_version = build_reference()
    meta = {'reference': f'mmsegmentation {mmseg_version}, configs/{CONFIG}', 'torch': torch.__version__,
            'num_classes': NUM_CLASSES, 'weights': {'model': fill_torch_model(ref)}, 'heads': {}}
    ref.eval()
    inputs = {'image': seeded_input((1, 3, 128, 256), seed=1)}
    logits = torch_logits(ref, torch.from_numpy(inputs['image']), torch)
    outputs = dict(zip(('decode_head', 'auxiliary_head.0', 'auxiliary_head.1'), logits))
    for i, (name, kind, kw) in enumerate(HEAD_CASES):
        head = MM.build(dict(type=kind, norm_cfg=dict(type='BN'), **kw))
        meta['weights'][f'head/{name}'] = fill_torch_model(head, seed=i + 1)
        meta['heads'][name] = {'type': kind, 'kwargs': kw}
        head.eval()
        inputs[f'head/{name}'] = seeded_input((2, kw['in_channels'], 13, 17), seed=10 + i)
        with torch.no_grad():
            outputs[f'head/{name}'] = head.forward([torch.from_numpy(inputs[f'head/{name}'])]).numpy()
    save_outputs(OUT.replace('.json', '.npz'), inputs, outputs, meta)
    print('wrote', OUT.replace('.json', '.npz'), {k: v.shape for k, v in outputs.items()})
    return 0


def main():
    import numpy as np
    import torch

    torch.manual_seed(0)
    ref, cfg_path, mmseg_version = build_reference()
    state = ref.state_dict()
    keys = {k: list(v.shape) for k, v in state.items()}
    print(f'mmseg {mmseg_version}: {len(keys)} state-dict entries, '
          f'{sum(p.numel() for p in ref.parameters())} parameters')

    randomize_and_calibrate(ref, torch)
    sd_np = {k: v.detach().cpu().numpy() for k, v in ref.state_dict().items()}

    sys.path.insert(0, ROOT)
    import paddle
    paddle.set_device('cpu')
    import zoo.models  # noqa: F401  (registers everything)
    from zoo.models.convert import convert
    from zoo.models.fast_scnn import FastSCNN

    ours = FastSCNN(num_classes=NUM_CLASSES)
    converted = convert(ours, 'mmseg', sd_np)
    ours.set_state_dict(converted)
    ours.eval()

    results = {}
    g = torch.Generator().manual_seed(1)
    for h, w in ((512, 1024), (333, 517)):
        x = torch.randn(1, 3, h, w, generator=g)
        ref_out = torch_logits(ref, x, torch)
        our_out = paddle_logits(ours, x.numpy(), paddle)
        diffs = {}
        for name, a, b in zip(('decode_head', 'auxiliary_head.0', 'auxiliary_head.1'), ref_out, our_out):
            assert a.shape == b.shape, (name, a.shape, b.shape)
            diffs[name] = {'max_abs_diff': float(np.abs(a - b).max()), 'ref_abs_max': float(np.abs(a).max()),
                           'shape': list(a.shape)}
        results[f'{h}x{w}'] = diffs
        print(f'input 1x3x{h}x{w}: ' + ', '.join(f'{n} max|diff| {d["max_abs_diff"]:.3g} '
                                                  f'(|ref| max {d["ref_abs_max"]:.3g})' for n, d in diffs.items()))
    heads = head_parity(torch, paddle, np)
    worst = max([d['max_abs_diff'] for r in results.values() for d in r.values()]
                + [h['max_abs_diff'] for h in heads.values()])
    print(f'worst max abs diff {worst:.3g} (target <= {TARGET})')

    manifest = {
        'model': 'FastSCNN',
        'source': 'mmseg',
        'produced_by': 'tests/manifests/fast_scnn_mmseg.py (run with /tmp/refenv/bin/python)',
        'produced_at': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'reference': {
            'package': f'mmsegmentation {mmseg_version}',
            'config': f'configs/{CONFIG}',
            'config_file_used': os.path.relpath(cfg_path, os.path.dirname(os.path.dirname(cfg_path))),
            'norm_override': 'SyncBN -> BN (same parameters and buffers; SyncBN needs a process group)',
            'num_classes': NUM_CLASSES,
            'torch': torch.__version__,
            'paddle': paddle.__version__,
            'python': platform.python_version(),
        },
        'num_state_dict_entries': len(keys),
        'num_parameters': int(sum(p.numel() for p in ref.parameters())),
        'state_dict': keys,
        'parity': {
            'method': 'random weights and BN affine, BN running stats calibrated by 3 train-mode passes '
                      '(2x3x256x512, cumulative average), eval mode; converted with '
                      "zoo.models.convert.convert(model, 'mmseg', sd); logits bilinearly resized to the input "
                      '(align_corners=False) on both sides',
            'inputs': results,
            'worst_max_abs_diff': worst,
            'heads': heads,
            'target': TARGET,
            'passed': bool(worst <= TARGET),
        },
    }
    with open(OUT, 'w') as f:
        json.dump(manifest, f, indent=1)
    print(f'wrote {OUT}')
    return 0 if worst <= TARGET else 1


if __name__ == '__main__':
    sys.exit(stored_outputs() if '--outputs' in sys.argv else main())
