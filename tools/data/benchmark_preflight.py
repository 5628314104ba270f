"""Time the trainer's pre-flight data check on a Cityscapes-size tree: cold (empty scan cache) and cached.

    python tools/data/benchmark_preflight.py --root /tmp/preflight_tree [--unique 120] [--num_workers 2]
    python tools/data/benchmark_preflight.py --root data/cityscapes --keep   # an existing Cityscapes tree

Without ``leftImg8bit/`` under --root it writes 2,975 train + 500 val pairs of 2048x1024 in the
Cityscapes layout: ``--unique`` samples drawn by the demo generator (zoo/datasets/prepare/demo.py,
~3 s each), each copied (not linked) to ~29 paths, so every file is read on its own. It prints wall
time, the CPU seconds of the scan (main process + workers) and the load average around each run,
and deletes the tree it wrote unless --keep. Numbers are in docs/data.md ("Pre-flight check").
"""
import os
import resource
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from zoo.utils.cli import ArgumentParser, main_wrapper  # noqa: E402

SPLITS = (('train', 2975, ('aachen', 'bremen', 'cologne', 'dusseldorf')), ('val', 500, ('frankfurt', 'lindau')))


def write_tree(root, unique, seed=7):
    import cv2
    import numpy as np

    from zoo.datasets.prepare.demo import make_sample
    pool = os.path.join(root, '_unique')
    os.makedirs(pool, exist_ok=True)
    for i in range(unique):
        img, lab = make_sample(np.random.default_rng([seed, i]), 1024, 2048)
        cv2.imwrite(os.path.join(pool, f'{i}.png'), img[:, :, ::-1])
        cv2.imwrite(os.path.join(pool, f'{i}_l.png'), lab)
    k = 0
    for split, n, cities in SPLITS:
        for j in range(n):
            city = cities[j % len(cities)]
            stem = f'{city}_{j:06d}_000019'
            for sub, src, suffix in (('leftImg8bit', f'{k % unique}.png', '_leftImg8bit.png'),
                                     ('gtFine', f'{k % unique}_l.png', '_gtFine_labelTrainIds.png')):
                d = os.path.join(root, sub, split, city)
                os.makedirs(d, exist_ok=True)
                shutil.copyfile(os.path.join(pool, src), os.path.join(d, stem + suffix))
            k += 1
    shutil.rmtree(pool)


def main(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--root', required=True, help='Cityscapes-layout tree (written here if absent)')
    p.add_argument('--unique', type=int, default=120, help='distinct generated samples when writing the tree')
    p.add_argument('--num_workers', type=int, default=2, help='scan processes (as train.py --num_workers)')
    p.add_argument('--keep', action='store_true', help='keep the tree it wrote')
    args = p.parse_args(argv)
    wrote = not os.path.isdir(os.path.join(args.root, 'leftImg8bit'))
    if wrote:
        t = time.time()
        write_tree(args.root, args.unique)
        print(f'wrote the tree in {time.time() - t:.0f} s')
    cache = tempfile.mkdtemp(prefix='preflight_cache_')
    os.environ['ZOO_SCAN_CACHE'] = cache  # an empty scan cache: the first run is cold
    from zoo.datasets.cityscapes import Cityscapes
    from zoo.datasets.scan import preflight_check
    try:
        datasets = {'train': Cityscapes(args.root, [], mode='train'), 'val': Cityscapes(args.root, [], mode='val')}
        for what in ('cold', 'cached', 'cached'):
            load0 = ' '.join(open('/proc/loadavg').read().split()[:3])
            r0 = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
            t = time.perf_counter()
            preflight_check(datasets, num_workers=args.num_workers)
            wall = time.perf_counter() - t
            r1 = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
            cpu = sum(b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime for a, b in zip(r0, r1))
            load1 = ' '.join(open('/proc/loadavg').read().split()[:3])
            print(f'{what}: {wall:.2f} s wall, {cpu:.1f} CPU s, {args.num_workers} workers; '
                  f'load average {load0} -> {load1}')
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if wrote and not args.keep:
            shutil.rmtree(args.root, ignore_errors=True)


if __name__ == '__main__':
    main_wrapper(main)
