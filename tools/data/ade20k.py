"""Check an extracted ADEChallengeData2016 (the loader reads it as is).

    python tools/data/ade20k.py data/ADEChallengeData2016 --nproc 8
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from zoo.datasets.prepare.ade20k import prepare_ade20k  # noqa: E402
from zoo.utils.cli import ArgumentParser, main_wrapper  # noqa: E402


def main(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('root', help='the ADEChallengeData2016 folder')
    p.add_argument('--nproc', type=int, default=1, help='worker processes')
    p.add_argument('--no-check-labels', action='store_true', help='skip reading every annotation')
    args = p.parse_args(argv)
    counts = prepare_ade20k(args.root, nproc=args.nproc, check_labels=not args.no_check_labels)
    print('ADE20K ok: ' + ', '.join(f'{k} {v}' for k, v in counts.items()))


if __name__ == '__main__':
    main_wrapper(main)
