"""Make ``*_gtFine_labelTrainIds.png`` from the official Cityscapes polygons.

    python tools/data/cityscapes.py data/cityscapes --nproc 8

``data/cityscapes`` holds ``gtFine/`` and ``leftImg8bit/`` (see docs/data.md).
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from zoo.datasets.prepare.cityscapes import prepare_cityscapes  # noqa: E402
from zoo.utils.cli import ArgumentParser, main_wrapper  # noqa: E402


def main(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('root', help='Cityscapes folder (with gtFine/ and leftImg8bit/)')
    p.add_argument('--nproc', type=int, default=1, help='worker processes')
    args = p.parse_args(argv)
    counts = prepare_cityscapes(args.root, nproc=args.nproc)
    print('wrote *_gtFine_labelTrainIds.png: ' + ', '.join(f'{k} {v}' for k, v in counts.items()))


if __name__ == '__main__':
    main_wrapper(main)
