"""Build VOC2012/SegmentationClassAug and the train_aug list from VOC 2012 + SBD.

    python tools/data/voc.py data/VOCdevkit data/benchmark_RELEASE --nproc 8
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from zoo.datasets.prepare.voc import prepare_voc_aug  # noqa: E402
from zoo.utils.cli import ArgumentParser, main_wrapper  # noqa: E402


def main(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('voc_root', help='the VOCdevkit folder (contains VOC2012/)')
    p.add_argument('sbd_root', help='the SBD benchmark_RELEASE folder (contains dataset/cls/)')
    p.add_argument('--nproc', type=int, default=1, help='worker processes')
    p.add_argument('--expect-full', action='store_true', help='fail unless train_aug has 10,582 ids')
    args = p.parse_args(argv)
    counts = prepare_voc_aug(args.voc_root, args.sbd_root, nproc=args.nproc, expect_full=args.expect_full)
    print('wrote SegmentationClassAug and lists: ' + ', '.join(f'{k} {v}' for k, v in counts.items()))


if __name__ == '__main__':
    main_wrapper(main)
