"""Look at what the model will see: N samples after the train transforms, saved as
``input | coloured label | legend`` images.

    python tools/data/browse_dataset.py --config configs/<model>/<config>.yml [--split train|val]
        [--num 8] [--seed 0] [--save_dir output/browse]
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from zoo.utils.cli import ArgumentParser, main_wrapper  # noqa: E402


def main(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--config', required=True, help='YAML config file')
    p.add_argument('--opts', nargs='+', default=[], help='config overrides: key.subkey=value ...')
    p.add_argument('--split', default='train', choices=['train', 'val'], help='which dataset of the config')
    p.add_argument('--num', type=int, default=8, help='number of samples')
    p.add_argument('--seed', type=int, default=0, help='which samples (the augmentation follows the index)')
    p.add_argument('--indices', nargs='+', type=int, help='these sample indices instead of random ones')
    p.add_argument('--save_dir', default='output/browse', help='output folder')
    args = p.parse_args(argv)
    from zoo.builder import build_dataset
    from zoo.engine.browse import browse
    from zoo.utils.config import Config
    from zoo.utils.errors import ZooError
    if args.num < 1:
        raise ZooError(f'--num must be at least 1, got {args.num}')
    dataset = build_dataset(Config(args.config, opts=args.opts), args.split)
    paths = browse(dataset, args.save_dir, args.num, args.seed, args.indices)
    print(f'wrote {len(paths)} image(s) to {args.save_dir} (input | label | legend)')


if __name__ == '__main__':
    main_wrapper(main)
