"""Write ``regseg_official.json``: the official RegSeg parameter tree and an output comparison.

Run by hand in a scratch environment that has torch and the official code (not part of
``make test``; ``tests/test_regseg.py`` reads the JSON)::

    /tmp/refenv/bin/python tests/manifests/regseg_official.py --official-dir /tmp/regseg_ref

``--official-dir`` holds the official ``model.py``, ``blocks.py``, ``competitor_blocks.py`` and
``benchmark.py`` from RolandGao/RegSeg, with a stub ``torchvision/ops.py`` (``DeformConv2d`` is
only used by ablation decoders). For each variant the script records the official state-dict
names and shapes, imports the official random weights with ``zoo.models.convert.convert(...,
'regseg', ...)`` and compares eval-mode logits (PyTorch vs Paddle dygraph) on the same input.
BN statistics are first calibrated with train-mode passes so that random deep weights give
non-degenerate activations.

With ``--outputs`` (torch only, no Paddle) it writes ``regseg_official.npz``: both official
variants with seeded float64 weights (``seeded.py``), one seeded 1x3x64x128 input and their
logits, which ``tests/test_regseg.py`` compares with ours on every run (``torchvision.ops`` is
stubbed by ``ssseg_env.py``)::

    /work/scratch/envs/mmseg/bin/python tests/manifests/regseg_official.py --outputs \
        --official-dir /work/scratch/src/RegSeg
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))


def calibrate_bn(model, torch, steps=3, size=(2, 3, 256, 512)):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average
            m.reset_running_stats()
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    model.train()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(steps):
            model(torch.randn(*size, generator=g))
    model.eval()


def stored_outputs(args):
    """Seeded float64 weights and one seeded input (sides multiples of 16: the decoder's
    upsampling ratios are exact, see tests/test_regseg.py) through both official variants."""
    from seeded import fill_torch_model, save_outputs, seeded_input
    from ssseg_env import stub_torchvision
    stub_torchvision()
    sys.path.insert(0, args.official_dir)
    import torch
    from model import RegSeg as OfficialRegSeg  # noqa: E402  (the official code)

    inputs = {'image': seeded_input((1, 3, 64, 128), seed=1)}
    meta = {'reference': 'RolandGao/RegSeg model.py', 'torch': torch.__version__, 'num_classes': 19, 'weights': {}}
    outputs = {}
    for name in args.variants.split(','):
        ref = OfficialRegSeg(name, 19)
        meta['weights'][name] = fill_torch_model(ref)
        ref.eval()
        with torch.no_grad():
            outputs[name] = ref(torch.from_numpy(inputs['image'])).numpy()
    path = args.out.replace('.json', '.npz')
    save_outputs(path, inputs, outputs, meta)
    print('wrote', path, {k: v.shape for k, v in outputs.items()})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--official-dir', default='/tmp/regseg_ref')
    ap.add_argument('--size', default='1024,2048', help='H,W of the comparison input')
    ap.add_argument('--variants', default='exp48_decoder26,exp53_decoder29')
    ap.add_argument('--out', default=os.path.join(HERE, 'regseg_official.json'))
    ap.add_argument('--outputs', action='store_true', help='write the stored-output file (.npz) instead')
    args = ap.parse_args()
    if args.outputs:
        return stored_outputs(args)
    sys.path.insert(0, args.official_dir)
    import torch
    from model import RegSeg as OfficialRegSeg  # noqa: E402  (the official code)

    import paddle
    from zoo.models.convert import convert
    from zoo.models.regseg import RegSeg

    torch.set_num_threads(2)
    h, w = (int(s) for s in args.size.split(','))
    sizes = [(h, w), (97, 131)]  # the official input size, and an odd one (ceil-mode pooling)
    out = {'source': 'github.com/RolandGao/RegSeg model.py/blocks.py (commit 0f61c66)',
           'produced_by': 'tests/manifests/regseg_official.py', 'torch': torch.__version__,
           'paddle': paddle.__version__, 'variants': {}}
    for name in args.variants.split(','):
        torch.manual_seed(0)
        ref = OfficialRegSeg(name, 19)
        calibrate_bn(ref, torch)
        sd = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
        model = RegSeg(19, name)
        converted = convert(model, 'regseg', sd)
        model.set_state_dict(converted)
        model.eval()
        entry = {'state_dict': [[k, list(v.shape)] for k, v in sd.items()], 'parity': []}
        for hh, ww in sizes:
            x = np.random.RandomState(0).randn(1, 3, hh, ww).astype('float32')
            t0 = time.time()
            with torch.no_grad():
                y_ref = ref(torch.from_numpy(x)).numpy()
            t1 = time.time()
            with paddle.no_grad():
                y = model(paddle.to_tensor(x))[0].numpy()
            t2 = time.time()
            diff = float(np.abs(y - y_ref).max())
            # float64 on both sides separates a port error from float32 rounding noise
            with torch.no_grad():
                y_ref64 = ref.double()(torch.from_numpy(x).double()).numpy()
            ref.float()
            paddle.set_default_dtype('float64')
            try:
                model64 = RegSeg(19, name)
                model64.set_state_dict({k: v.astype('float64') for k, v in converted.items()})
                model64.eval()
                with paddle.no_grad():
                    y64 = model64(paddle.to_tensor(x.astype('float64')))[0].numpy()
            finally:
                paddle.set_default_dtype('float32')
            rec = {'input': [1, 3, hh, ww], 'max_abs_diff': diff,
                   'max_abs_ref': float(np.abs(y_ref).max()),
                   'argmax_agreement': float((y.argmax(1) == y_ref.argmax(1)).mean()),
                   'max_abs_diff_float64': float(np.abs(y64 - y_ref64).max()),
                   'torch_float32_vs_float64': float(np.abs(y_ref - y_ref64).max())}
            entry['parity'].append(rec)
            print(f'{name} 1x3x{hh}x{ww}: max|diff| float32 {diff:.3g} (|ref| max {rec["max_abs_ref"]:.3g}, '
                  f'argmax agreement {rec["argmax_agreement"]:.6f}), float64 {rec["max_abs_diff_float64"]:.3g}, '
                  f'torch float32 vs float64 {rec["torch_float32_vs_float64"]:.3g}; '
                  f'torch {t1 - t0:.1f}s paddle dygraph {t2 - t1:.1f}s', flush=True)
        out['variants'][name] = entry
    with open(args.out, 'w') as f:
        json.dump(out, f, indent=1)
    print('wrote', args.out)


if __name__ == '__main__':
    main()
