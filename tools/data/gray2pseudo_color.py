"""Colour single-channel class-id labels as palette PNGs (PaddleSeg's gray2pseudo_color.py), to look at them.

    python tools/data/gray2pseudo_color.py <label.png|folder> <out_dir> [--config cfg.yml]

The pixel values stay the class ids (a palette PNG stores indices), so the output can be turned
back with pseudo_color2gray.py. Colours: the config's dataset palette, else the VOC colour map.
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from zoo.utils.cli import ArgumentParser, main_wrapper  # noqa: E402


def main(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('src', help='a label PNG or a folder of them (searched recursively)')
    p.add_argument('dst', help='output folder')
    p.add_argument('--config', help='colour with this config\'s dataset palette')
    p.add_argument('--ignore_index', type=int, default=255)
    args = p.parse_args(argv)
    import cv2
    from zoo.datasets.meta import config_meta
    from zoo.engine.visual import get_palette, save_palette_png
    from zoo.utils.errors import DataError
    meta = None
    if args.config:
        from zoo.utils.config import Config
        meta = config_meta(Config(args.config))
    palette = get_palette(256, meta)
    if os.path.isdir(args.src):
        files = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(args.src) for f in fs if f.lower().endswith('.png'))
        root = args.src
    elif os.path.isfile(args.src):
        files, root = [args.src], os.path.dirname(args.src)
    else:
        raise DataError(f'{args.src!r} does not exist (expected a label PNG or a folder of them)')
    for f in files:
        lab = cv2.imread(f, cv2.IMREAD_UNCHANGED)
        if lab is None or lab.ndim != 2:
            raise DataError(f'{f!r} is not a single-channel label image')
        out = os.path.join(args.dst, os.path.relpath(f, root))
        os.makedirs(os.path.dirname(out), exist_ok=True)
        save_palette_png(out, lab, palette, args.ignore_index)
    print(f'wrote {len(files)} palette PNG(s) to {args.dst}')


if __name__ == '__main__':
    main_wrapper(main)
