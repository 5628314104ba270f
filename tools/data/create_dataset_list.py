"""Write the file lists of a custom dataset: pair images with labels by name, split with a seed.

    python tools/data/create_dataset_list.py <dataset_root> [--image_dir images --label_dir labels]
        [--split 0.8 0.2 [0.0]] [--seed 0] [--image_suffix .jpg .png] [--label_suffix .png]
        [--class_names background cat dog]

Writes ``train.txt``, ``val.txt`` (and ``test.txt`` with a third ratio) into <dataset_root>, one
``<image> <label>`` line per sample relative to it; ``unlabeled.txt`` lists images without a label
(for tools/predict.py); ``labels.txt`` the class names when given. See docs/custom_dataset.md.
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from zoo.utils.cli import ArgumentParser, main_wrapper  # noqa: E402


def main(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('dataset_root', help='dataset folder; lists are written here, paths relative to it')
    p.add_argument('--image_dir', default='images', help='image folder under the root (searched recursively)')
    p.add_argument('--label_dir', default='labels', help='label folder under the root (same relative names)')
    p.add_argument('--split', nargs='+', type=float, default=[0.8, 0.2], metavar='RATIO',
                   help='train val [test] ratios (default 0.8 0.2)')
    p.add_argument('--seed', type=int, default=0, help='seed of the shuffle before splitting')
    p.add_argument('--image_suffix', nargs='+', default=['.jpg', '.jpeg', '.png'],
                   help='image name endings, e.g. _leftImg8bit.png (default .jpg .jpeg .png)')
    p.add_argument('--label_suffix', default='.png', help='label name ending, e.g. _gtFine_labelTrainIds.png')
    p.add_argument('--separator', default=' ', help='field separator in the lists (default: a space)')
    p.add_argument('--class_names', nargs='+', help='class names in id order, written to labels.txt')
    args = p.parse_args(argv)
    from zoo.datasets.lists import create_dataset_list
    written, orphans = create_dataset_list(args.dataset_root, args.image_dir, args.label_dir, args.split, args.seed,
                                           tuple(args.image_suffix), args.label_suffix, args.separator,
                                           args.class_names)
    for name, n in written.items():
        print(f'{os.path.join(args.dataset_root, name)}: {n} line(s)')
    if orphans:
        print(f'warning: {len(orphans)} label(s) have no image, e.g. {orphans[0]}', file=sys.stderr)


if __name__ == '__main__':
    main_wrapper(main)
