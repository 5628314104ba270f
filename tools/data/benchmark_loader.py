"""Loader throughput: images/s of one worker through the Cityscapes train transforms.

    python tools/data/benchmark_loader.py                     # synthetic 2048x1024 images
    python tools/data/benchmark_loader.py --dataset_root data/cityscapes --num 50

Uses the train pipeline of ``--config`` (default configs/_base_/cityscapes.yml: RandomRescale
(2048, 1024) x 0.5-2.0 -> RandomCrop 512x1024 cat_max_ratio 0.75 -> flip ->
PhotoMetricDistortion -> Normalize -> Pad) and reports the time of each stage per image.
Without ``--dataset_root`` it writes a small Cityscapes-layout tree of smooth synthetic
2048x1024 PNGs (photo-like file sizes) to a temporary folder.
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))


def write_synthetic_cityscapes(root, n, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        stem = f'bench_{i:06d}_000019'
        img_dir = os.path.join(root, 'leftImg8bit', 'train', 'bench')
        lab_dir = os.path.join(root, 'gtFine', 'train', 'bench')
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(lab_dir, exist_ok=True)
        # low-frequency color field + mild noise: compresses like a street photo, unlike pure noise
        small = rng.integers(0, 256, (16, 32, 3), dtype=np.uint8)
        img = cv2.resize(small, (2048, 1024), interpolation=cv2.INTER_CUBIC)
        img = np.clip(img.astype(np.int16) + rng.integers(-6, 7, img.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(os.path.join(img_dir, f'{stem}_leftImg8bit.png'), img)
        lab = cv2.resize(rng.integers(0, 19, (8, 16), dtype=np.uint8), (2048, 1024), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(os.path.join(lab_dir, f'{stem}_gtFine_labelTrainIds.png'), lab)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', default=os.path.join(REPO, 'configs', '_base_', 'cityscapes.yml'))
    p.add_argument('--dataset_root', default=None, help='a prepared Cityscapes folder (default: synthetic)')
    p.add_argument('--num', type=int, default=30, help='images to time')
    p.add_argument('--warmup', type=int, default=3)
    args = p.parse_args(argv)

    import zoo
    from zoo.utils.config import Config

    cfg = Config(args.config)
    tmp = None
    if args.dataset_root is None:
        tmp = tempfile.TemporaryDirectory()
        write_synthetic_cityscapes(tmp.name, min(args.num + args.warmup, 12))
        cfg.dic['train_dataset']['dataset_root'] = tmp.name
    else:
        cfg.dic['train_dataset']['dataset_root'] = args.dataset_root
    ds = zoo.build_dataset(cfg, 'train')
    stages = ['read'] + [type(t).__name__ for t in ds.transforms.transforms] + ['to CHW']
    spent = np.zeros(len(stages))
    cpu = 0.0
    for k in range(args.warmup + args.num):
        c0 = time.process_time()
        i = ds._seed(k)
        t0 = time.perf_counter()
        sample = ds.load_sample(i)
        times = [time.perf_counter()]
        for t in ds.transforms.transforms:
            sample = t(sample)
            times.append(time.perf_counter())
        np.ascontiguousarray(sample['img'].transpose(2, 0, 1))
        times.append(time.perf_counter())
        if k >= args.warmup:
            spent += np.diff([t0] + times)
            cpu += time.process_time() - c0
    total = spent.sum()
    print(f'{args.num} images, 1 worker: {args.num / total:.2f} images/s ({1000 * total / args.num:.0f} ms/image '
          f'wall, {1000 * cpu / args.num:.0f} ms/image CPU -> {args.num / cpu:.2f} images/s on an idle core)')
    for name, s in zip(stages, spent):
        print(f'  {name:<24s} {1000 * s / args.num:7.1f} ms  ({100 * s / total:4.1f}%)')
    if tmp is not None:
        tmp.cleanup()


if __name__ == '__main__':
    from zoo.utils.cli import main_wrapper
    main_wrapper(main)
