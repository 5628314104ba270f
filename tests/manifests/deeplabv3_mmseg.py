"""Manifest + parity for DeepLabV3 R-50-D8 / R-101-D8 from mmsegmentation 1.2.2. NOT part of
``make test``.

Run in the scratch environment with torch, mmsegmentation 1.2.2 (+ mmcv-lite, mmengine) and
paddlepaddle 3.2.2:

    /tmp/refenv/bin/python tests/manifests/deeplabv3_mmseg.py            # manifest only
    /tmp/refenv/bin/python tests/manifests/deeplabv3_mmseg.py --parity   # + output parity
    /tmp/refenv/bin/python tests/manifests/deeplabv3_mmseg.py --parity --float64   # diagnostic
    /tmp/refenv/bin/python tests/manifests/deeplabv3_mmseg.py --reference-noise    # diagnostic

The models are mmseg's own ``EncoderDecoder`` built from the configs shipped in the package
(``mmseg/.mim/configs/deeplabv3/deeplabv3_r{50,101}-d8_4xb2-80k_cityscapes-512x1024.py``), with
SyncBN replaced by BN (CPU, single process) and no pretrained download. Every state-dict
name and shape goes to ``deeplabv3_mmseg.json`` (``tests/test_deeplabv3.py`` maps them onto our
model through the importer).

``--parity``: random BN affine parameters, BN statistics calibrated by one train-mode pass
with momentum 1 on a 4x3x128x256 input (per-sample scale/offset), then the state dict is
converted by our importer into
the model built from our config; eval-mode logits (decode head, resized to the input; and the
auxiliary FCN head at feature resolution) are compared on a 1x3x512x1024 input.

``--float64`` runs both models in float64 (1x3x128x256, float64 convs are slow on CPU): if the
port computes the same function the difference drops to ~1e-9, separating rounding from
structure. ``--reference-noise`` measures the reference against itself (its float32 vs float64
logits at 1x3x512x1024), the floor any float32 port can hope for.

``--outputs`` (torch and mmseg only) writes ``deeplabv3_mmseg.npz``: the R-50-D8 model with
seeded float64 weights (``seeded.py``), a seeded 1x3x128x128 input (16x16 features: the rate-12
ASPP branch reaches real pixels) and its decode and auxiliary logits resized to the input, which
``tests/test_deeplabv3.py`` compares with ours on every run:

    /work/scratch/envs/mmseg/bin/python tests/manifests/deeplabv3_mmseg.py --outputs
"""
import argparse
import json
import os
import sys
import time
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, 'deeplabv3_mmseg.json')

CASES = {
    'deeplabv3_r50-d8_cityscapes': ('configs/deeplabv3/deeplabv3_r50-d8_cityscapes_512x1024_80k.yml',
                                    'deeplabv3/deeplabv3_r50-d8_4xb2-80k_cityscapes-512x1024.py', 19),
    'deeplabv3_r101-d8_cityscapes': ('configs/deeplabv3/deeplabv3_r101-d8_cityscapes_512x1024_80k.yml',
                                     'deeplabv3/deeplabv3_r101-d8_4xb2-80k_cityscapes-512x1024.py', 19),
}


def _stub_mmcv_ext():
    """mmseg's registry imports mmcv._ext (compiled ops) that DeepLabV3 never calls."""
    def missing(*a, **k):
        raise RuntimeError('mmcv._ext stub: compiled op called')
    def getattr_(name):
        if name.startswith('__'):
            raise AttributeError(name)
        return missing
    stub = types.ModuleType('mmcv._ext')
    stub.__getattr__ = getattr_
    sys.modules['mmcv._ext'] = stub


def build_reference(mm_config):
    _stub_mmcv_ext()
    import mmseg
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules()
    cfg_dir = os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'configs')
    cfg = Config.fromfile(os.path.join(cfg_dir, mm_config))
    cfg.model.pretrained = None
    for part in ('backbone', 'decode_head', 'auxiliary_head'):
        cfg.model[part].norm_cfg = dict(type='BN', requires_grad=True)
    return MODELS.build(cfg.model), mmseg.__version__


def calibrate(ref):
    """Random BN affine parameters; running statistics from one train-mode pass."""
    import torch
    rng = np.random.default_rng(0)
    bns = [m for m in ref.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in bns:
            c = bn.num_features
            bn.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, c).astype('float32')))
            bn.bias.copy_(torch.from_numpy(rng.normal(0, 0.1, c).astype('float32')))
            bn.momentum = 1.0  # running stats := this batch's statistics
        ref.train()
        # per-sample scale and offset, so that the image-pool branch (1x1 features) sees a real
        # spread across the batch; near-identical samples give it a ~0 running variance that
        # amplifies float32 rounding differences by orders of magnitude
        calib = rng.normal(0, 1, (4, 3, 128, 256)) * rng.uniform(0.5, 2.0, (4, 1, 1, 1)) \
            + rng.normal(0, 1, (4, 3, 1, 1))
        feats = ref.extract_feat(torch.from_numpy(calib.astype('float32')))
        ref.decode_head(feats), ref.auxiliary_head(feats)
    ref.eval()


def parity(name, config, ref, num_classes, dtype='float32', size=(512, 1024)):
    import torch
    import torch.nn.functional as TF
    sys.path.insert(0, ROOT)
    import paddle
    import zoo
    from zoo.models.convert import convert
    from zoo.utils.config import Config
    paddle.set_device('cpu')
    ours = zoo.build_model(Config(os.path.join(ROOT, config),
                                  opts=['model.backbone.pretrained=null', f'model.num_classes={num_classes}']))
    calibrate(ref)
    if dtype == 'float64':  # diagnostic: separates rounding from structural differences
        ref.double()
        ours.to(dtype='float64')
    sd = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    ours.set_state_dict(convert(ours, 'mmseg', sd))
    ours.eval()
    x = np.random.default_rng(1).normal(0, 1, (1, 3) + tuple(size)).astype(dtype)
    t = time.time()
    with torch.no_grad():
        feats = ref.extract_feat(torch.from_numpy(x))
        a = TF.interpolate(ref.decode_head(feats), size=x.shape[2:], mode='bilinear', align_corners=False).numpy()
        a_aux = ref.auxiliary_head(feats).numpy()
    captured = {}
    hook = ours.backbone.register_forward_post_hook(lambda layer, inp, out: captured.setdefault('feats', out))
    with paddle.no_grad():
        b = ours(paddle.to_tensor(x))[0].numpy()
        b_aux = ours.auxiliary_head(captured['feats']).numpy()
    hook.remove()
    diff, diff_aux = float(np.abs(a - b).max()), float(np.abs(a_aux - b_aux).max())
    agree = float((a.argmax(1) == b.argmax(1)).mean())
    print(f'{name}: max abs diff {diff:.3e} (aux head {diff_aux:.3e}; logit range {a.min():.2f}..{a.max():.2f}, '
          f'argmax agreement {agree:.6f}, {time.time() - t:.0f}s)')
    return {'input': [1, 3] + list(size), 'dtype': dtype, 'max_abs_diff': diff, 'aux_max_abs_diff': diff_aux,
            'logit_abs_max': float(np.abs(a).max()), 'argmax_agreement': agree}


def reference_noise(name, ref):
    """The reference against itself: float32 vs float64 logits, same weights, 1x3x512x1024."""
    import torch
    import torch.nn.functional as TF
    calibrate(ref)
    x = np.random.default_rng(1).normal(0, 1, (1, 3, 512, 1024))
    out = {}
    with torch.no_grad():
        for dtype in ('float32', 'float64'):
            m = ref.float() if dtype == 'float32' else ref.double()
            feats = m.extract_feat(torch.from_numpy(x.astype(dtype)))
            out[dtype] = TF.interpolate(m.decode_head(feats), size=x.shape[2:], mode='bilinear',
                                        align_corners=False).double().numpy()
    diff = float(np.abs(out['float32'] - out['float64']).max())
    print(f'{name}: reference float32 vs float64 max abs diff {diff:.3e}')
    return {'input': [1, 3, 512, 1024], 'max_abs_diff': diff}


def stored_outputs(name='deeplabv3_r50-d8_cityscapes'):
    import torch
    import torch.nn.functional as TF
    from seeded import fill_torch_model, save_outputs, seeded_input
    config, mm_config, num_classes = CASES[name]
    ref, version = build_reference(mm_config)
    meta = {'reference': f'mmsegmentation {version}, configs/{mm_config}', 'torch': torch.__version__,
            'config': config, 'num_classes': num_classes, 'weights': {'model': fill_torch_model(ref)}}
    ref.eval()
    inputs = {'image': seeded_input((1, 3, 128, 128), seed=1)}
    with torch.no_grad():
        x = torch.from_numpy(inputs['image'])
        feats = ref.extract_feat(x)
        outputs = {part: TF.interpolate(head(feats), size=x.shape[2:], mode='bilinear', align_corners=False).numpy()
                   for part, head in (('decode_head', ref.decode_head), ('auxiliary_head', ref.auxiliary_head))}
    path = OUT.replace('.json', '.npz')
    save_outputs(path, inputs, outputs, meta)
    print('wrote', path, {k: v.shape for k, v in outputs.items()})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--outputs', action='store_true', help='write deeplabv3_mmseg.npz (see the docstring)')
    ap.add_argument('--parity', action='store_true')
    ap.add_argument('--cases', nargs='*', default=list(CASES))
    ap.add_argument('--reference-noise', action='store_true',
                    help='the reference alone, float32 vs float64 (stored as reference_fp32_vs_fp64)')
    ap.add_argument('--float64', action='store_true',
                    help='diagnostic: both models in float64 on 1x3x128x256 (stored as parity_float64)')
    args = ap.parse_args()
    if args.outputs:
        return stored_outputs()
    import torch
    torch.manual_seed(0)
    torch.set_num_threads(2)
    manifest = json.load(open(OUT)) if os.path.isfile(OUT) else {}
    for name in args.cases:
        config, mm_config, num_classes = CASES[name]
        ref, version = build_reference(mm_config)
        manifest['_source'] = (f'mmsegmentation {version} (torch {torch.__version__}): EncoderDecoder from '
                               'mmseg/.mim/configs/deeplabv3, SyncBN -> BN, built by '
                               'tests/manifests/deeplabv3_mmseg.py')
        entry = {'config': config, 'mmseg_config': mm_config, 'num_classes': num_classes,
                 'params': {k: list(v.shape) for k, v in ref.state_dict().items()}}
        old = manifest.get(name, {})
        if 'parity' in old:
            entry['parity'] = old['parity']
        for key in ('parity_float64', 'reference_fp32_vs_fp64'):
            if key in old:
                entry[key] = old[key]
        if args.reference_noise:
            entry['reference_fp32_vs_fp64'] = reference_noise(name, ref)
        if args.parity:
            if args.float64:  # both sides in float64, smaller input (float64 convs are slow on CPU)
                entry['parity_float64'] = parity(name, config, ref, num_classes, 'float64', (128, 256))
            else:
                entry['parity'] = parity(name, config, ref, num_classes)
        manifest[name] = entry
        print(name, len(entry['params']), 'tensors')
    # re-read before writing: several cases may be run by parallel processes
    current = json.load(open(OUT)) if os.path.isfile(OUT) else {}
    current['_source'] = manifest['_source']
    for k in args.cases:  # field-level merge: keep measurements other runs stored meanwhile
        current[k] = dict(current.get(k, {}), **manifest[k])
    with open(OUT, 'w') as f:
        json.dump(current, f, indent=1, sort_keys=True)


if __name__ == '__main__':
    main()
