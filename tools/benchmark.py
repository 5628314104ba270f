"""Measure models on dygraph, Paddle Inference (oneDNN fp32) and ONNX Runtime, on one input.

    python tools/benchmark.py --config configs/fast_scnn/fast_scnn_cityscapes_512x1024_160k.yml \
        [more configs ...] [--input_shape 1 3 512 1024 | --test_resolution] [--threads 2] \
        [--warmup 2] [--iters 5] [--dygraph_iters K] [--csv out.csv] [--json out.json] [--no_dygraph] [--no_onnx]

Prints a table (parameters, FLOPs, median milliseconds per path, the ratios between them and the
largest logit difference of the exported model vs dygraph). See docs/benchmark.md.
"""
import argparse
import os
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Benchmark models on dygraph / Paddle Inference / ONNX Runtime.')
    p.add_argument('--config', nargs='+', required=True, help='one or more YAML configs')
    p.add_argument('--input_shape', nargs=4, type=int, default=None, metavar=('N', 'C', 'H', 'W'),
                   help='input shape (default 1 3 512 1024)')
    p.add_argument('--test_resolution', action='store_true',
                   help="use each config's test resolution (its dataset's image size through its val resizes)")
    p.add_argument('--threads', type=int, default=2, help='CPU threads for every path')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--iters', type=int, default=5)
    p.add_argument('--dygraph_iters', type=int, default=None,
                   help='timed dygraph runs (default --iters; 0 times the first, reference run: a large model takes '
                        'minutes per run on CPU)')
    p.add_argument('--no_dygraph', action='store_true', help='skip the (slow) dygraph timing')
    p.add_argument('--no_onnx', action='store_true', help='skip ONNX export and ONNX Runtime')
    p.add_argument('--opts', nargs='+', default=[], help='config overrides applied to every config')
    p.add_argument('--csv', default=None, help='write the rows as CSV here')
    p.add_argument('--json', default=None, help='write the rows as JSON here')
    p.add_argument('--markdown', action='store_true', help='also print a Markdown table (docs/benchmark.md)')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads < 1 or args.iters < 1 or args.warmup < 0 or (args.dygraph_iters or 0) < 0:
        raise SystemExit('error: --threads and --iters must be >= 1, --warmup and --dygraph_iters >= 0')
    import csv
    import json

    from zoo.benchmark import COLUMNS, benchmark_config, format_rows, markdown_rows, test_resolution
    from zoo.utils.config import Config
    rows = []
    for path in args.config:
        cfg = Config(path, opts=args.opts)
        if args.test_resolution:
            shape = [1, 3, *test_resolution(cfg)]
        else:
            shape = args.input_shape or [1, 3, 512, 1024]
        row = benchmark_config(cfg, shape, threads=args.threads, warmup=args.warmup, iters=args.iters,
                               onnx=not args.no_onnx, dygraph=not args.no_dygraph,
                               dygraph_iters=args.dygraph_iters)
        rows.append(row)
        print(format_rows([row]), flush=True)
    print(format_rows(rows))
    if args.markdown:
        print(markdown_rows(rows))
    if args.csv:
        with open(args.csv, 'w', newline='', encoding='utf-8') as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction='ignore')
            w.writeheader()
            w.writerows(rows)
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(rows, f, indent=2)


def set_threads_env(argv=None):
    """Dygraph's math library reads these once, when paddle is imported: set them first."""
    threads = str(parse_args(argv).threads)
    for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
        os.environ[var] = threads


if __name__ == '__main__':
    set_threads_env()
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from zoo.utils.cli import main_wrapper
    main_wrapper(main)
