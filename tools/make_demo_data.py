"""Write the procedurally generated demo dataset (Cityscapes layout, ``DemoShapes``).

    python tools/make_demo_data.py --root data/demo [--num_train 500 --num_val 60
        --height 128 --width 256 --seed 0]

Prints the summary, the class pixel frequencies and the val mIoU of always predicting the
most frequent class (the floor any trained model must beat).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from zoo.datasets.meta import DEMO_CLASSES  # noqa: E402
from zoo.datasets.prepare.demo import color_only_miou, generate_demo_dataset, majority_baseline  # noqa: E402
from zoo.utils.cli import ArgumentParser, main_wrapper  # noqa: E402


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--root', default='data/demo', help='output folder (default: data/demo)')
    p.add_argument('--num_train', type=int, default=500)
    p.add_argument('--num_val', type=int, default=60)
    p.add_argument('--height', type=int, default=128)
    p.add_argument('--width', type=int, default=256)
    p.add_argument('--seed', type=int, default=0)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    info = generate_demo_dataset(args.root, num_train=args.num_train, num_val=args.num_val,
                                 height=args.height, width=args.width, seed=args.seed)
    base = majority_baseline(args.root)
    print(f'wrote {info["num_train"]} train + {info["num_val"]} val images of {info["width"]}x{info["height"]} '
          f'(seed {info["seed"]}) to {args.root} in {info["seconds"]:.1f} s')
    print(f'{"class":<12}{"train %":>9}{"val %":>9}')
    for name, ft, fv in zip(DEMO_CLASSES, base['train_freq'], base['val_freq']):
        print(f'{name:<12}{100 * ft:>9.2f}{100 * fv:>9.2f}')
    print(f'always predicting "{DEMO_CLASSES[base["most_frequent_class"]]}" gives val mIoU {base["miou"]:.4f}; '
          f'the best per-pixel color rule learnt on train {color_only_miou(args.root):.4f} (a model must use shape)')


if __name__ == '__main__':
    main_wrapper(main)
