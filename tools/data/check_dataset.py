"""Check a dataset before training: counts, sizes, pixels and images per class, every unreadable,
truncated, RGB/palette/16-bit, mis-sized or out-of-range label, and suggested num_classes,
ignore_index and class weights (median frequency balancing). Exit 2 if anything is wrong.

    python tools/data/check_dataset.py --config configs/<model>/<config>.yml [--num_workers 2]
    python tools/data/check_dataset.py <dataset_root> [--train_path train.txt --val_path val.txt]
        [--num_classes N --ignore_index 255 --reduce_zero_label] [--class_names a b c | --labels labels.txt]

It reads the files with the scanner the trainer's pre-flight check uses (zoo/datasets/scan.py), so
what it accepts trains, and the training run reads its results from the cache.
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))

from zoo.utils.cli import ArgumentParser, main_wrapper  # noqa: E402


def parse_args(argv=None):
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('dataset_root', nargs='?', help='dataset folder with the file lists (without --config)')
    p.add_argument('--config', help='check the train_dataset and val_dataset of this config instead')
    p.add_argument('--opts', nargs='+', default=[], help='config overrides: key.subkey=value ...')
    p.add_argument('--train_path', default='train.txt', help='training list (relative to the root)')
    p.add_argument('--val_path', default='val.txt', help='validation list; skipped if it does not exist')
    p.add_argument('--num_classes', type=int, help='class count (default: suggested from the labels)')
    p.add_argument('--ignore_index', type=int, default=255)
    p.add_argument('--reduce_zero_label', action='store_true', help='stored 0 is ignored, v -> v - 1')
    p.add_argument('--labels', help='class names file (one per line), default <root>/labels.txt if present')
    p.add_argument('--num_workers', type=int, default=2, help='decoding processes')
    p.add_argument('--max_problems', type=int, default=50, help='problems printed per split')
    return p.parse_args(argv)


def build_datasets(args):
    from zoo.datasets.base import Dataset
    from zoo.utils.errors import DataError
    if args.config:
        from zoo.builder import build_dataset
        from zoo.utils.config import Config
        cfg = Config(args.config, opts=args.opts)
        return {k: build_dataset(cfg, k) for k in ('train', 'val') if f'{k}_dataset' in cfg.dic}, None
    if not args.dataset_root:
        raise DataError('give a dataset folder or --config (see tools/data/check_dataset.py --help)')
    labels = args.labels or os.path.join(args.dataset_root, 'labels.txt')
    names = None
    if os.path.isfile(labels):
        from zoo.datasets.labelme import read_class_list
        names = read_class_list(labels)[0]
    elif args.labels:
        raise DataError(f'--labels {args.labels!r} does not exist')
    if args.num_classes and names and len(names) != args.num_classes:
        raise DataError(f'{labels} has {len(names)} names but --num_classes is {args.num_classes}')
    # an unknown class count: 255 accepts every stored value, the table then suggests the count
    n = args.num_classes or (len(names) if names else 255)
    out = {}
    for split, lst in (('train', args.train_path), ('val', args.val_path)):
        path = lst if os.path.isabs(lst) else os.path.join(args.dataset_root, lst)
        if split == 'val' and not os.path.isfile(path):
            continue
        out[split] = Dataset(args.dataset_root, [], num_classes=n, mode=split, train_path=lst, val_path=lst,
                             ignore_index=args.ignore_index, reduce_zero_label=args.reduce_zero_label,
                             class_names=names if names and len(names) == n else None)
    return out, (args.num_classes or (len(names) if names else None))


def main(argv=None):
    args = parse_args(argv)
    from zoo.datasets.check import dataset_stats, format_report, suggestions
    from zoo.datasets.scan import dataset_tasks, scan_files
    from zoo.utils.errors import DataError
    datasets, known = build_datasets(args)
    if args.config:
        known = next(iter(datasets.values())).num_classes
    tasks = [t for ds in datasets.values() for t in dataset_tasks(ds)]
    records, scan = scan_files(tasks, num_workers=args.num_workers, desc='check_dataset')
    print(f'scanned {scan["files"]} files in {scan["seconds"]:.1f} s ({scan["cached"]} from the cache)')
    stats = {k: dataset_stats(ds, records, check_range=known is not None) for k, ds in datasets.items()}
    for split, st in stats.items():
        shown = dict(st, problems=st['problems'][:args.max_problems])
        print(format_report(split, shown, known=known is not None))
        if len(st['problems']) > args.max_problems:
            print(f'... and {len(st["problems"]) - args.max_problems} more problem(s)')
    if 'train' in stats:
        sug = suggestions(stats['train'], known)
        print('== suggested settings (from train):')
        print(f'num_classes: {sug["num_classes"]}   ignore_index: {sug["ignore_index"]}')
        if sug.get('class_weights'):
            print('class weights (median frequency balancing), for CrossEntropyLoss:')
            print(f'  weight: {sug["class_weights"]}')
    n_problems = sum(len(st['problems']) for st in stats.values())
    if n_problems:
        first = next(p for st in stats.values() for p in st['problems'])
        raise DataError(f'{n_problems} problem(s) in the dataset, the first: {first}')
    print('no problems found')


if __name__ == '__main__':
    main_wrapper(main)
