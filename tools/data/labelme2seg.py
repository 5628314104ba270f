"""Convert labelme JSON annotations into single-channel class-id PNGs (labelme's own drawing rules).

    python tools/data/labelme2seg.py <json_dir> <out_dir> --labels labels.txt [--nproc 4]
    python tools/data/labelme2seg.py <json_dir> <out_dir> --class_names background cat dog

``labels.txt``: one class name per line, the background (id 0) first; a first line ``__ignore__``
(labelme's convention) marks shapes whose pixels are ignored (``--ignore_index``, 255). Writes
``<out_dir>/images/`` (each image file as it is), ``labels/`` (8-bit ids), ``pseudo_color/``
(palette previews) and ``labels.txt``. Next: tools/data/create_dataset_list.py (docs/custom_dataset.md).
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from zoo.utils.cli import ArgumentParser, main_wrapper  # noqa: E402


def main(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('json_dir', help='folder of labelme *.json files')
    p.add_argument('out_dir', help='output folder (images/, labels/, pseudo_color/, labels.txt)')
    names = p.add_mutually_exclusive_group(required=True)
    names.add_argument('--labels', help='class list file, one name per line (labelme labels.txt)')
    names.add_argument('--class_names', nargs='+', help='class names in id order, the background first')
    p.add_argument('--ignore_index', type=int, default=255, help='label value of __ignore__ shapes')
    p.add_argument('--nproc', type=int, default=1, help='worker processes')
    args = p.parse_args(argv)
    from functools import partial

    from zoo.datasets.labelme import IGNORE_NAME, convert_folder, read_class_list
    from zoo.engine.visual import get_palette, save_palette_png
    if args.labels:
        class_names, has_ignore = read_class_list(args.labels)
    else:
        has_ignore = IGNORE_NAME in args.class_names
        class_names = [n for n in args.class_names if n != IGNORE_NAME]
    preview = partial(save_palette_png, palette=get_palette(len(class_names)), ignore_index=args.ignore_index)
    pairs = convert_folder(args.json_dir, args.out_dir, class_names, has_ignore, args.ignore_index, args.nproc,
                           preview=preview)
    print(f'converted {len(pairs)} annotation(s) into {args.out_dir} ({len(class_names)} classes: '
          f'{", ".join(class_names)})')


if __name__ == '__main__':
    main_wrapper(main)
