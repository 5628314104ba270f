"""RegSeg speed: our exported model in Paddle Inference (oneDNN) vs the official PyTorch model.

The official FPS protocol (RegSeg ``benchmark.py``): batch 1, 1x3x1024x2048 random input, 10
warm-up then 100 timed forward passes, the final upsample to the input size included, argmax
excluded; mean time per pass (we also give the median). Both sides run in one invocation, each in
its own child process (two OpenMP runtimes in one process slow each other down), on
the same input and the same (random, BN-calibrated) weights, with the same thread count, and
their outputs are compared. Needs torch and the official code, so it runs in a scratch env::

    /tmp/refenv/bin/python tools/parity/regseg_speed.py --official-dir /tmp/regseg_ref

(see tests/manifests/regseg_official.py for the official-code folder).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)


def summary(times, warmup):
    return {'mean_s': statistics.mean(times), 'median_s': statistics.median(times),
            'min_s': min(times), 'runs': len(times), 'warmup': warmup}


def timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return summary(times, warmup)


def export(model, folder):
    import paddle
    model.eval()
    static = paddle.jit.to_static(model, input_spec=[paddle.static.InputSpec([None, 3, None, None], 'float32', 'x')],
                                  full_graph=True)
    paddle.jit.save(static, os.path.join(folder, 'model'))
    name = 'model.json' if os.path.isfile(os.path.join(folder, 'model.json')) else 'model.pdmodel'
    return os.path.join(folder, name), os.path.join(folder, 'model.pdiparams')


def paddle_predictor(model_file, params_file, threads, mkldnn=True):
    import paddle.inference as pdi
    config = pdi.Config(model_file, params_file)
    config.disable_gpu()
    if mkldnn:
        config.enable_mkldnn()
    config.set_cpu_math_library_num_threads(threads)
    config.switch_ir_optim(True)
    config.disable_glog_info()
    return pdi.create_predictor(config)


def worker_paddle(args, data):
    """Export our model with the official weights and time it in Paddle Inference (oneDNN)."""
    import paddle
    from zoo.models.regseg import RegSeg
    paddle.set_device('cpu')
    x = data['x']
    ours = RegSeg(19, args.variant)
    ours.set_state_dict({k[len('w/'):]: data[k] for k in data.files if k.startswith('w/')})
    with tempfile.TemporaryDirectory() as folder:
        model_file, params_file = export(ours, folder)
        predictor = paddle_predictor(model_file, params_file, args.threads)
        inp = predictor.get_input_handle(predictor.get_input_names()[0])
        inp.reshape(list(x.shape))
        inp.copy_from_cpu(x)
        stats = timed(predictor.run, args.warmup, args.iters)
        y = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
    return stats, y, paddle.__version__


def worker_torch(args, data):
    """Time the official model eagerly (``torch.no_grad``), as its benchmark.py does on CPU."""
    import torch
    sys.path.insert(0, args.official_dir)
    from model import RegSeg as OfficialRegSeg
    torch.set_num_threads(args.threads)
    ref = OfficialRegSeg(args.variant, 19)
    ref.load_state_dict({k[len('t/'):]: torch.from_numpy(data[k]) for k in data.files if k.startswith('t/')})
    ref.eval()
    xt = torch.from_numpy(data['x'])

    def forward():
        with torch.no_grad():
            return ref(xt)

    tw = args.warmup if args.torch_warmup is None else args.torch_warmup
    ti = args.iters if args.torch_iters is None else args.torch_iters
    stats = timed(forward, tw, ti)
    return stats, forward().numpy(), torch.__version__


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--official-dir', default='/tmp/regseg_ref')
    ap.add_argument('--variant', default='exp48_decoder26')
    ap.add_argument('--size', default='1024,2048')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--warmup', type=int, default=10)
    ap.add_argument('--iters', type=int, default=100)
    ap.add_argument('--torch-warmup', type=int, default=None, help='default: --warmup')
    ap.add_argument('--torch-iters', type=int, default=None, help='default: --iters')
    ap.add_argument('--out', default='', help='write the figures as JSON here')
    ap.add_argument('--worker', choices=['paddle', 'torch'], help=argparse.SUPPRESS)
    ap.add_argument('--data', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        data = np.load(args.data)
        stats, y, version = (worker_paddle if args.worker == 'paddle' else worker_torch)(args, data)
        np.save(args.data + f'.{args.worker}.npy', y)
        with open(args.data + f'.{args.worker}.json', 'w') as f:
            json.dump({'stats': stats, 'version': version}, f)
        return

    # The official weights (random, BN calibrated) and the input, shared by both workers. Each
    # side is timed in its own process: two OpenMP runtimes in one process (torch's and
    # Paddle's) spin-wait against each other and slow both down on 2 cores.
    import subprocess

    import torch
    sys.path.insert(0, args.official_dir)
    from model import RegSeg as OfficialRegSeg  # the official code
    sys.path.insert(0, os.path.join(ROOT, 'tests', 'manifests'))
    from regseg_official import calibrate_bn
    from zoo.models.convert import convert
    from zoo.models.regseg import RegSeg

    h, w = (int(s) for s in args.size.split(','))
    torch.manual_seed(0)
    ref = OfficialRegSeg(args.variant, 19)
    calibrate_bn(ref, torch)
    sd = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    ours = convert(RegSeg(19, args.variant), 'regseg', sd)
    arrays = {'x': np.random.RandomState(0).randn(1, 3, h, w).astype('float32')}
    arrays.update({f't/{k}': v for k, v in sd.items()})
    arrays.update({f'w/{k}': v for k, v in ours.items()})
    result = {'variant': args.variant, 'input': [1, 3, h, w], 'threads': args.threads,
              'protocol': 'batch 1, random input, warm-up then timed forward passes, final upsample '
                          'included, argmax excluded'}
    with tempfile.TemporaryDirectory() as folder:
        data = os.path.join(folder, 'data.npz')
        np.savez(data, **arrays)
        outs = {}
        for side in ('paddle', 'torch'):
            cmd = [sys.executable, os.path.abspath(__file__), '--worker', side, '--data', data]
            for k in ('official_dir', 'variant', 'threads', 'warmup', 'iters', 'torch_warmup', 'torch_iters'):
                v = getattr(args, k)
                if v is not None:
                    cmd += ['--' + k.replace('_', '-'), str(v)]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            with open(data + f'.{side}.json') as f:
                rec = json.load(f)
            outs[side] = np.load(data + f'.{side}.npy')
            key = 'paddle_inference_onednn' if side == 'paddle' else 'pytorch_eager'
            result[key] = rec['stats']
            result[side + '_version'] = rec['version']
            print(key, rec['stats'], flush=True)
    result['max_abs_diff_outputs'] = float(np.abs(outs['paddle'] - outs['torch']).max())
    result['argmax_agreement'] = float((outs['paddle'].argmax(1) == outs['torch'].argmax(1)).mean())
    for k in ('mean', 'median'):
        result[f'ratio_{k}'] = result['paddle_inference_onednn'][k + '_s'] / result['pytorch_eager'][k + '_s']
    print(json.dumps(result, indent=1))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
