"""Loader throughput: our train pipeline next to mmsegmentation's, in images per CPU-second.

    python tools/data/benchmark_loader.py                  # 20 generated 2048x1024 pairs
    python tools/data/benchmark_loader.py --mmseg_python /work/scratch/envs/mmseg/bin/python
    python tools/data/benchmark_loader.py --dataset_root data/cityscapes --num 50

Ours: the train pipeline of ``--config`` (default: the Fast-SCNN Cityscapes config:
RandomRescale (2048, 1024) x 0.5-2.0 -> RandomCrop 512x1024, cat_max_ratio 0.75 -> flip ->
PhotoMetricDistortion -> Normalize -> Pad), through ``Dataset.__getitem__`` (read, transforms,
CHW float32 image and int64 label: what a DataLoader worker does per sample).

mmseg's (when mmseg is importable here, or with ``--mmseg_python``): mmsegmentation 1.2.2's own
``fastscnn/fast_scnn_8xb4-160k_cityscapes-512x1024.py``: its ``train_pipeline`` (LoadImageFromFile,
LoadAnnotations, RandomResize, RandomCrop, RandomFlip, PhotoMetricDistortion, PackSegInputs),
and that plus its ``SegDataPreProcessor`` (BGR->RGB, float, normalize, pad to the crop: the work
our Normalize and Pad do inside the pipeline).

Each pipeline runs in its own process, on one core's worth of threads (OpenCV threads off as in
mmseg's runtime ``opencv_num_threads=0`` and in our loader; torch 1 thread). Rounds alternate
ours / mmseg's with 0.5 s idle in between; every round processes the same images with the same
per-image seeds, so both pipelines draw the same rescale ratios and crop boxes. The figure is
the median over rounds of images per CPU-second (process CPU time: what a loader worker costs
whatever else runs on the machine) with wall-clock images/s beside it, and the load average
before and after. Without ``--dataset_root``, smooth synthetic 2048x1024 PNGs (photo-like file
sizes) with 19-class labels are written to a temporary folder.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, REPO)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

DEFAULT_CONFIG = os.path.join(REPO, 'configs', 'fast_scnn', 'fast_scnn_cityscapes_512x1024_160k.yml')
MMSEG_CONFIG = 'fastscnn/fast_scnn_8xb4-160k_cityscapes-512x1024.py'
TAG = '@@'  # protocol lines on a worker's stdout start with this


def write_synthetic_cityscapes(root, n, seed=0, height=1024, width=2048):
    """``n`` Cityscapes-layout train pairs: a low-frequency color field plus mild noise (compresses
    like a street photo, unlike pure noise) and a blocky 19-class trainId label."""
    rng = np.random.default_rng(seed)
    img_dir = os.path.join(root, 'leftImg8bit', 'train', 'bench')
    lab_dir = os.path.join(root, 'gtFine', 'train', 'bench')
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(lab_dir, exist_ok=True)
    for i in range(n):
        stem = f'bench_{i:06d}_000019'
        small = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
        img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        img = np.clip(img.astype(np.int16) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(os.path.join(img_dir, f'{stem}_leftImg8bit.png'), img)
        lab = cv2.resize(rng.integers(0, 19, (8, 16), dtype=np.uint8), (width, height),
                         interpolation=cv2.INTER_NEAREST)
        lab[:, :8] = 255  # some ignored pixels, as real labels have
        cv2.imwrite(os.path.join(lab_dir, f'{stem}_gtFine_labelTrainIds.png'), lab)


# -- workers (each in its own process) ---------------------------------------------------------

def build_train_dataset(config, root):
    import zoo
    from zoo.utils.config import Config
    cfg = Config(config)
    cfg.dic['train_dataset']['dataset_root'] = root
    return zoo.build_dataset(cfg, 'train')


class OursWorker:
    def __init__(self, config, root, num):
        self.ds = build_train_dataset(config, root)
        self.num = min(num, len(self.ds))
        self.files = self.ds.file_list[:self.num]

    def run(self):
        for k in range(self.num):
            self.ds[k]

    def stages(self):
        """Seconds per stage over one pass (the same steps as ``Dataset.__getitem__``)."""
        from zoo.datasets.base import to_chw
        names = ['read'] + [type(t).__name__ for t in self.ds.transforms.transforms] + ['to CHW / int64']
        spent = np.zeros(len(names))
        for k in range(self.num):
            i = self.ds._seed(k)
            t = [time.process_time()]
            sample = self.ds.load_sample(i)
            t.append(time.process_time())
            for tr in self.ds.transforms.transforms:
                sample = tr(sample)
                t.append(time.process_time())
            to_chw(sample['img']), np.ascontiguousarray(sample['label'].astype('int64'))
            t.append(time.process_time())
            spent += np.diff(t)
        return dict(zip(names, spent.tolist()))


class MmsegWorker:
    def __init__(self, files, preprocessor):
        sys.path.insert(0, os.path.join(REPO, 'tools', 'parity'))
        from mmseg_env import mmseg_config
        import torch
        from mmcv.transforms import Compose
        from mmseg.registry import MODELS
        torch.set_num_threads(1)
        cfg = mmseg_config(MMSEG_CONFIG)
        self.pipeline = Compose(cfg.train_pipeline)
        self.preprocessor = MODELS.build(cfg.model.data_preprocessor) if preprocessor else None
        self.files = files

    def sample(self, k):
        img, lab = self.files[k]
        np.random.seed(k)  # the seed our Dataset uses for sample k of epoch 0 (seed 0)
        random.seed(k)
        results = dict(img_path=img, seg_map_path=lab, reduce_zero_label=False, seg_fields=[], label_map=None,
                       sample_idx=k)
        return results

    def _one(self, k):
        out = self.pipeline(self.sample(k))
        if self.preprocessor is not None:
            self.preprocessor({'inputs': [out['inputs']], 'data_samples': [out['data_samples']]}, training=True)

    def run(self):
        for k in range(len(self.files)):
            self._one(k)

    def stages(self):
        names = [type(t).__name__ for t in self.pipeline.transforms] + (
            ['SegDataPreProcessor'] if self.preprocessor is not None else [])
        spent = np.zeros(len(names))
        for k in range(len(self.files)):
            results = self.sample(k)
            t = [time.process_time()]
            for tr in self.pipeline.transforms:
                results = tr(results)
                t.append(time.process_time())
            if self.preprocessor is not None:
                self.preprocessor({'inputs': [results['inputs']], 'data_samples': [results['data_samples']]},
                                  training=True)
                t.append(time.process_time())
            spent += np.diff(t)
        return dict(zip(names, spent.tolist()))


def worker_main(args):
    cv2.setNumThreads(0)
    with open(args.files) as f:
        spec = json.load(f)
    if args.worker == 'ours':
        w = OursWorker(spec['config'], spec['root'], len(spec['files']))
    else:
        w = MmsegWorker(spec['files'], preprocessor=args.worker == 'mmseg+preprocessor')
    print(TAG + json.dumps({'ready': True}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == 'run':
            c0, t0 = time.process_time(), time.perf_counter()
            w.run()
            out = {'cpu': time.process_time() - c0, 'wall': time.perf_counter() - t0, 'n': len(w.files)}
        elif cmd == 'stages':
            out = {'stages': w.stages(), 'n': len(w.files)}
        else:
            break
        print(TAG + json.dumps(out), flush=True)


# -- the parent ----------------------------------------------------------------------------------

class Worker:
    """A worker process driven over stdin/stdout."""

    def __init__(self, name, python, spec_path, env=None):
        self.name = name
        self.proc = subprocess.Popen([python, os.path.abspath(__file__), '--worker', name, '--files', spec_path],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self._read()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith(TAG):
                return json.loads(line[len(TAG):])
        raise RuntimeError(f'{self.name} worker ended (exit code {self.proc.wait()}); see its messages above')

    def ask(self, cmd):
        self.proc.stdin.write(cmd + '\n')
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        try:
            self.proc.stdin.write('quit\n')
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


def find_mmseg_python(given):
    if given:
        return given
    try:
        import importlib.util
        if importlib.util.find_spec('mmseg') is not None:
            return sys.executable
    except (ImportError, ValueError):
        pass
    return None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default=DEFAULT_CONFIG, help='our config (its train_dataset pipeline)')
    p.add_argument('--dataset_root', default=None, help='a prepared Cityscapes folder (default: generated)')
    p.add_argument('--num', type=int, default=20, help='images per round')
    p.add_argument('--rounds', type=int, default=5, help='timed rounds per pipeline (after one warm-up round)')
    p.add_argument('--mmseg_python', default=None,
                   help="a Python with mmsegmentation 1.2.2 (default: this one, if it can import mmseg)")
    p.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    p.add_argument('--files', default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker_main(args)
    from zoo.utils.errors import DataError
    tmp = tempfile.TemporaryDirectory()
    root = args.dataset_root
    if root is None:
        root = tmp.name
        write_synthetic_cityscapes(root, args.num)
    elif not os.path.isdir(root):
        raise DataError(f'--dataset_root {root!r} does not exist')
    files = [list(f) for f in build_train_dataset(args.config, root).file_list[:args.num]]
    spec = os.path.join(tmp.name, 'spec.json')
    with open(spec, 'w') as f:
        json.dump({'config': args.config, 'root': root, 'files': files}, f)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    mmseg_python = find_mmseg_python(args.mmseg_python)
    names = ['ours'] + (['mmseg', 'mmseg+preprocessor'] if mmseg_python else [])
    workers = []
    try:
        for name in names:
            workers.append(Worker(name, sys.executable if name == 'ours' else mmseg_python, spec, env))
        stages = {w.name: w.ask('stages')['stages'] for w in workers}  # also the warm-up round
        load0 = os.getloadavg()
        rates = {w.name: [] for w in workers}
        walls = {w.name: [] for w in workers}
        for _ in range(args.rounds):
            for w in workers:
                r = w.ask('run')
                rates[w.name].append(r['n'] / r['cpu'])
                walls[w.name].append(r['n'] / r['wall'])
                time.sleep(0.5)  # let the previous process's threads go quiet
        load1 = os.getloadavg()
    finally:
        for w in workers:
            w.close()
        tmp.cleanup()
    n = len(files)

    print(f'{n} images of {"generated 2048x1024 pairs" if args.dataset_root is None else root}, '
          f'{args.rounds} rounds, medians; load average {load0[0]:.2f} before, {load1[0]:.2f} after')
    print(f'{"pipeline":<22s} {"images/CPU-s":>13s} {"images/s wall":>14s} {"vs mmseg":>9s} {"vs mmseg+pre":>13s}')
    med = {k: statistics.median(v) for k, v in rates.items()}
    for name in rates:
        ratios = ''.join(f'{med[name] / med[ref]:>{w}.2f}x' if ref in med else ' ' * (w + 1)
                         for ref, w in (('mmseg', 8), ('mmseg+preprocessor', 12)))
        print(f'{name:<22s} {med[name]:>13.2f} {statistics.median(walls[name]):>14.2f} {ratios}')
    if not mmseg_python:
        print('mmseg: not importable here; pass --mmseg_python (a Python with mmsegmentation 1.2.2)')
    for name, st in stages.items():
        total = sum(st.values())
        print(f'\n{name}: CPU ms per image by stage (one pass)')
        for stage, s in st.items():
            print(f'  {stage:<24s} {1000 * s / n:7.1f} ms  ({100 * s / total:4.1f}%)')
    return med


if __name__ == '__main__':
    if '--worker' in sys.argv:  # a worker may run in mmseg's environment, without zoo
        main()
    else:
        from zoo.utils.cli import main_wrapper
        main_wrapper(main)
