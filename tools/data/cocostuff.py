"""Convert COCO-Stuff-10k ``annotations/*.mat`` to ``labels/*.png``.

    python tools/data/cocostuff.py data/cocostuff-10k --nproc 8
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from zoo.datasets.prepare.cocostuff import prepare_cocostuff10k  # noqa: E402
from zoo.utils.cli import ArgumentParser, main_wrapper  # noqa: E402


def main(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('root', help='folder with images/, annotations/ and imageLists/')
    p.add_argument('--nproc', type=int, default=1, help='worker processes')
    args = p.parse_args(argv)
    counts = prepare_cocostuff10k(args.root, nproc=args.nproc)
    print('wrote labels/*.png: ' + ', '.join(f'{k} {v}' for k, v in counts.items()))


if __name__ == '__main__':
    main_wrapper(main)
