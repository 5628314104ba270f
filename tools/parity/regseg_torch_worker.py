"""The official RegSeg in PyTorch eager mode, as one path of tools/benchmark.py.

Runs in a PyTorch environment (no Paddle needed), speaks the benchmark's worker protocol
(``serve`` in deploy/python/infer.py: ``run K`` / ``save PATH`` / ``stats`` / ``quit`` on stdin,
``@@ {json}`` answers on stdout) and times the official protocol's forward pass (batch 1, ``torch.no_grad``,
the final upsample included, argmax excluded), on the driver's input and weights::

    python tools/benchmark.py --suite deploy --torch_python /work/scratch/envs/mmseg/bin/python \
        --regseg_dir /work/scratch/src/RegSeg

The official ``model.py`` imports ``torchvision.ops`` for ablation blocks only; a stub module
stands in for it (torchvision has no CPU build here).
"""
import argparse
import os
import sys
import types

import numpy as np


def stub_torchvision():
    """``torchvision.ops`` as an empty module whose attributes raise when called."""
    def missing(name):
        def f(*args, **kwargs):
            raise RuntimeError(f'torchvision.ops.{name} is not available (stub)')
        return f

    tv = types.ModuleType('torchvision')
    ops = types.ModuleType('torchvision.ops')
    ops.__getattr__ = missing
    tv.ops = ops
    sys.modules.setdefault('torchvision', tv)
    sys.modules.setdefault('torchvision.ops', ops)


def to_torch_names(weights):
    """Our (Paddle) RegSeg state dict -> the official one: the same names but BN statistics."""
    out = {}
    for k, v in weights.items():
        k = k.replace('._mean', '.running_mean').replace('._variance', '.running_var')
        out[k] = v
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--official_dir', required=True, help='the official RegSeg code (model.py)')
    ap.add_argument('--weights', required=True, help='our weights as .npz (tools/benchmark.py writes it)')
    ap.add_argument('--input', required=True, help='the input batch (.npy)')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--variant', default='exp48_decoder26')
    ap.add_argument('--num_classes', type=int, default=19)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    stub_torchvision()
    sys.path.insert(0, args.official_dir)
    from model import RegSeg  # the official code
    model = RegSeg(args.variant, args.num_classes)
    weights = np.load(args.weights if args.weights.endswith('.npz') else os.path.splitext(args.weights)[0] + '.npz')
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in to_torch_names(dict(weights)).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith('num_batches_tracked')]
    if missing or unexpected:
        raise SystemExit(f'error: weights do not fit the official model: missing {missing[:4]}, '
                         f'unexpected {unexpected[:4]}')
    model.eval()
    x = torch.from_numpy(np.load(args.input))

    def run():
        with torch.no_grad():
            return model(x)

    # the benchmark's worker protocol, from deploy/python/infer.py (numpy, cv2, yaml: no Paddle needed)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                    'deploy', 'python'))
    import infer
    infer.serve(run, lambda out: out.argmax(1).numpy(),
                describe=f'official RegSeg, PyTorch {torch.__version__} eager, {args.threads} threads')


if __name__ == '__main__':
    main()
