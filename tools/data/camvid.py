"""Convert CamVid labels (RegSeg's color labels or SegNet's ids) to ``{split}_trainIds/*.png``.

    python tools/data/camvid.py data/CamVid            # in place
    python tools/data/camvid.py SegNet/CamVid -o data/CamVid --layout segnet
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from zoo.datasets.prepare.camvid import prepare_camvid  # noqa: E402
from zoo.utils.cli import ArgumentParser, main_wrapper  # noqa: E402


def main(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('src', help='the downloaded CamVid folder')
    p.add_argument('-o', '--out', default=None, help='output folder (default: src, in place)')
    p.add_argument('--layout', default='auto', choices=['auto', 'color', 'segnet'])
    p.add_argument('--nproc', type=int, default=1, help='worker processes')
    args = p.parse_args(argv)
    counts = prepare_camvid(args.src, out=args.out, layout=args.layout, nproc=args.nproc)
    print('wrote *_trainIds labels: ' + ', '.join(f'{k} {v}' for k, v in counts.items()))


if __name__ == '__main__':
    main_wrapper(main)
