"""Turn colour-coded labels into single-channel class-id PNGs (the reverse of gray2pseudo_color.py).

    python tools/data/pseudo_color2gray.py <label.png|folder> <out> [--config cfg.yml | --colors r g b r g b ... | --palette voc]

Palette PNGs keep their indices (they are the ids); RGB masks with equal channels keep one
channel; colour masks are mapped through the class colours (the config's dataset palette,
``--colors`` in class order, or the VOC colour map); unknown colours become --ignore_index and
are counted. See docs/custom_dataset.md.
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from zoo.utils.cli import ArgumentParser, main_wrapper  # noqa: E402


def main(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('src', help='a label PNG or a folder of them (searched recursively)')
    p.add_argument('dst', help='output folder (or .png file for one input)')
    src = p.add_mutually_exclusive_group()
    src.add_argument('--config', help='take the class colours from this config\'s dataset')
    src.add_argument('--colors', nargs='+', type=int, help='class colours as r g b triples in class order')
    src.add_argument('--palette', choices=['voc'], help='the VOC colour map (labelme, PaddleSeg previews)')
    p.add_argument('--ignore_index', type=int, default=255, help='id of pixels whose colour is not a class')
    args = p.parse_args(argv)
    from zoo.datasets.label_colors import convert_labels
    from zoo.datasets.meta import config_meta, voc_palette
    from zoo.utils.errors import DataError
    palette = None
    if args.config:
        from zoo.utils.config import Config
        meta = config_meta(Config(args.config))
        if meta is None:
            raise DataError(f'--config {args.config!r}: cannot tell its dataset\'s classes')
        palette = meta.palette
    elif args.colors:
        if len(args.colors) % 3 or not all(0 <= v <= 255 for v in args.colors):
            raise DataError('--colors: expected r g b triples of integers in 0..255')
        palette = [args.colors[i:i + 3] for i in range(0, len(args.colors), 3)]
    elif args.palette == 'voc':
        palette = voc_palette(255).tolist()
    done = convert_labels(args.src, args.dst, palette, args.ignore_index)
    unknown = [(s, n) for s, _, n, _ in done if n]
    print(f'wrote {len(done)} label(s) to {args.dst} ({", ".join(sorted({h for *_, h in done}))})')
    if unknown:
        print(f'warning: {len(unknown)} label(s) have colours outside the palette, set to {args.ignore_index}; '
              f'e.g. {unknown[0][0]} ({unknown[0][1]} pixels)', file=sys.stderr)


if __name__ == '__main__':
    main_wrapper(main)
