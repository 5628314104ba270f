"""One table per config: every deploy path (backend x precision) measured in one run.

    python tools/benchmark.py --config configs/fast_scnn/fast_scnn_cityscapes_512x1024_160k.yml \
        --input_shape 1 3 512 1024 [--model_path W] [--threads N] [--rounds 7] [--iters 1] \
        [--paths paddle:fp32 paddle:bf16 onnxruntime:fp32 ...] [--no_dygraph] \
        [--extra_worker "NAME=COMMAND ... {input} {weights} {threads} ..."] [--markdown] [--json out.json]
    python tools/benchmark.py --suite deploy [--torch_python P --regseg_dir D]   # docs/benchmark.md's tables

Paths: Paddle dygraph fp32 (the reference of the argmax agreement), Paddle Inference fp32 / bf16
(oneDNN; the ratio column is to Paddle Inference fp32, the default of deploy/python/infer.py),
ONNX Runtime fp32 / int8, OpenVINO fp32 / bf16 / int8 (int8: tools/quant.py's QDQ model, calibrated
on the training set with --model_path, else on random inputs: speed only). Each path runs in its
own process; rounds are interleaved with 0.5 s idle between paths; the table gives medians, the
ratio to Paddle Inference fp32, the argmax agreement with dygraph fp32 on the same input, and
each process's peak memory. A path this machine cannot run gets a row saying why.
See docs/benchmark.md.
"""
import argparse
import contextlib
import os
import shlex
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFER = os.path.join(REPO, 'deploy', 'python', 'infer.py')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Every deploy path of a model in one table (interleaved rounds).')
    p.add_argument('--config', nargs='+', help='one or more YAML configs (one table each)')
    p.add_argument('--suite', choices=['deploy'], help='the configs and sizes of docs/benchmark.md')
    p.add_argument('--input_shape', nargs=4, type=int, default=None, metavar=('N', 'C', 'H', 'W'),
                   help='input shape (default 1 3 512 1024)')
    p.add_argument('--test_resolution', action='store_true',
                   help="use each config's test resolution (its dataset's image size through its val resizes)")
    p.add_argument('--model_path', default=None, help='trained weights (default: random weights with calibrated BN)')
    p.add_argument('--threads', type=int, default=None, help='CPU threads of every path (default: all cores)')
    p.add_argument('--rounds', type=int, default=7, help='interleaved rounds (medians over them)')
    p.add_argument('--iters', type=int, default=1, help='timed runs per path per round')
    p.add_argument('--paths', nargs='+', default=None, metavar='BACKEND:PRECISION',
                   help='deploy paths to measure (default: all seven)')
    p.add_argument('--no_dygraph', action='store_true', help='no dygraph row (then no argmax agreement)')
    p.add_argument('--calib_images', type=int, default=20, help='int8 calibration images')
    p.add_argument('--extra_worker', action='append', default=[], metavar='NAME=COMMAND',
                   help='another path in its own process speaking the worker protocol (zoo/benchmark.py); '
                        '{input}, {weights}, {threads} and {config} in COMMAND are filled in')
    p.add_argument('--torch_python', default=None, help='--suite: python of a PyTorch env for the official RegSeg')
    p.add_argument('--regseg_dir', default=None, help='--suite: the official RegSeg code (model.py)')
    p.add_argument('--work_dir', default=None, help='where the export and worker logs go, kept afterwards (default: a temp folder, removed)')
    p.add_argument('--opts', nargs='+', default=[], help='config overrides applied to every config')
    p.add_argument('--accuracy', action='store_true',
                   help='score every path on the config\'s val set instead (mIoU / aAcc, needs --model_path and '
                        'the dataset): dygraph fp32 as tools/val.py, the others through deploy/python/infer.py '
                        '--dataset_config; int8 calibrated on --calib_images training images')
    p.add_argument('--markdown', action='store_true', help='also print the table as Markdown')
    p.add_argument('--json', default=None, help='write every table\'s rows as JSON here')
    p.add_argument('--verbose', action='store_true', help='per-round progress and third-party warnings')
    p.add_argument('--worker', choices=['dygraph'], help=argparse.SUPPRESS)  # a path's own process
    p.add_argument('--input', default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not args.worker and not (args.config or args.suite):
        p.error('--config or --suite is required')
    if args.rounds < 1 or args.iters < 1 or (args.threads is not None and args.threads < 1):
        p.error('--rounds, --iters and --threads must be >= 1')
    return args


SUITE = [  # (config, input H x W, extra worker) of issue 17's table
    ('configs/fast_scnn/fast_scnn_cityscapes_512x1024_160k.yml', (512, 1024), None),
    ('configs/fast_scnn/fast_scnn_cityscapes_512x1024_160k.yml', (1024, 2048), None),
    ('configs/regseg/regseg_exp48_cityscapes_768x768_1000e.yml', (1024, 2048), 'regseg'),
    ('configs/deeplabv3/deeplabv3_resnet50-vd-os8_cityscapes_512x1024_80k.yml', (512, 1024), None),
]


def dygraph_worker(args):
    """This process is the dygraph path: build, load the driver's weights, serve."""
    import numpy as np
    import paddle
    from zoo.builder import build_model
    from zoo.export import without_pretrained
    from zoo.utils.checkpoint import load_state_dict_checked, read_state_dict
    from zoo.utils.config import Config
    cfg = without_pretrained(Config(args.config[0], opts=args.opts))
    model = build_model(cfg)
    load_state_dict_checked(model, read_state_dict(args.model_path), args.model_path, strict=True)
    model.eval()
    x = paddle.to_tensor(np.load(args.input))

    def run():
        with paddle.no_grad():
            return model(x)[0].numpy()

    infer = _infer()
    infer.serve(run, lambda logits: logits.argmax(axis=1), describe='dygraph fp32 (paddle.no_grad)')


def deploy_paths(args):
    """``[(name, backend, precision, why not or None)]`` of the requested paths."""
    import zoo.benchmark as zb
    paths = [tuple(p.split(':')) for p in args.paths] if args.paths else zb.DEPLOY_PATHS
    return [(f'{b} {p}', b, p, _available(b, p)) for b, p in paths]


def _available(backend, precision):
    """None if this machine can run the path, else why not (one line)."""
    import importlib.util
    infer = _infer()
    if backend in ('onnxruntime', 'openvino') and importlib.util.find_spec(backend) is None:
        return f'{backend} not installed (pip install {backend})'
    return infer.unsupported(backend, 'cpu', precision)


def _infer():
    """deploy/python/infer.py as a module (it is a script, not part of the package)."""
    if os.path.dirname(INFER) not in sys.path:
        sys.path.insert(0, os.path.dirname(INFER))
    import infer
    return infer


def benchmark_one(cfg_path, shape, args, work_dir, extra_workers=(), log=print):
    """Export, start every path, interleave the rounds; returns (title, rows, facts)."""
    import numpy as np
    import paddle
    import zoo.benchmark as zb
    from zoo.builder import build_model, dataset_num_classes
    from zoo.export import export_model, without_pretrained
    from zoo.export.quant import calibration_inputs, int8_step
    from zoo.utils.checkpoint import load_state_dict_checked, read_state_dict
    from zoo.utils.config import Config
    from zoo.utils.errors import ZooError
    infer = _infer()
    threads = args.threads or infer.default_threads()
    cfg = without_pretrained(Config(cfg_path, opts=args.opts))
    os.makedirs(work_dir, exist_ok=True)
    model = build_model(cfg)
    x = np.random.RandomState(0).uniform(-2, 2, shape).astype('float32')
    if args.model_path:
        load_state_dict_checked(model, read_state_dict(args.model_path), args.model_path, strict=True)
        weights_note = f'weights {args.model_path}'
    else:  # speed does not depend on the values; calibrated BN keeps activations like a trained model's
        paddle.seed(0)
        zb.calibrate_bn(model, shape=(2, 3, min(shape[2], 256), min(shape[3], 512)),
                        num_classes=cfg.get('model.num_classes') or dataset_num_classes(cfg))
        weights_note = 'random weights (BN calibrated): agreement of reduced precisions is not meaningful'
    model.eval()
    weights = os.path.join(work_dir, 'model.pdparams')
    paddle.save(model.state_dict(), weights)
    if extra_workers:  # the same weights for foreign workers (no Paddle there): plain arrays
        np.savez(os.path.join(work_dir, 'model.npz'), **{k: v.numpy() for k, v in model.state_dict().items()})
    params = zb.count_params(model)
    flops = zb.count_flops(model, [1, 3, shape[2], shape[3]])
    np.save(os.path.join(work_dir, 'input.npy'), x)

    paths = deploy_paths(args)
    want_int8 = any(prec == 'int8' and not why for _, _, prec, why in paths)
    calib_note = ''

    def int8_inputs():
        nonlocal calib_note
        try:
            inputs = list(calibration_inputs(cfg, args.calib_images)) if args.model_path else None
            calib_note = f'int8 calibrated on {args.calib_images} training images'
        except ZooError:
            inputs = None
        if inputs is None:  # no dataset here: speed only (two inputs at half size keep calibration light)
            rng = np.random.RandomState(1)
            small = [shape[0], shape[1], max(shape[2] // 2, 32), max(shape[3] // 2, 32)]
            inputs = [rng.uniform(-2, 2, small).astype('float32') for _ in range(2)]
            calib_note = 'int8 calibrated on random inputs (speed only)'
        return inputs

    export_dir = os.path.join(work_dir, 'export')
    export_model(cfg, export_dir, model=model, output_op='argmax', fmt='onnx', verbose=args.verbose,
                 extra_step=int8_step(int8_inputs, verbose=args.verbose) if want_int8 else None)
    del model
    deploy_yaml = os.path.join(export_dir, 'deploy.yaml')
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONPATH=REPO)
    workers, skipped = [], []
    if not args.no_dygraph:
        cmd = [sys.executable, os.path.abspath(__file__), '--worker', 'dygraph', '--config', cfg_path,
               '--model_path', weights, '--input', os.path.join(work_dir, 'input.npy')]
        if args.opts:
            cmd += ['--opts', *args.opts]
        workers.append(zb.Worker('dygraph fp32', cmd, env=env, cwd=REPO,
                                 log_path=os.path.join(work_dir, 'dygraph.log')))
    for name, backend, precision, why in paths:
        if why:
            skipped.append({'path': name, 'error': why})
            continue
        cmd = [sys.executable, INFER, '--config', deploy_yaml, '--backend', backend, '--precision', precision,
               '--cpu_threads', str(threads), '--benchmark_worker', os.path.join(work_dir, 'input.npy')]
        workers.append(zb.Worker(name, cmd, env=env, cwd=REPO,
                                 log_path=os.path.join(work_dir, name.replace(' ', '_') + '.log')))
    for name, command in extra_workers:
        cmd = shlex.split(command.format(input=os.path.join(work_dir, 'input.npy'), weights=weights,
                                         threads=threads, config=cfg_path))
        workers.append(zb.Worker(name, cmd, env=dict(os.environ, OMP_NUM_THREADS=str(threads)), cwd=REPO,
                                 log_path=os.path.join(work_dir, name.replace(' ', '_') + '.log')))
    for w in workers:  # one at a time: loading competes for the cores as much as running does
        w.wait_ready()
        if w.error:
            log(f'{w.name}: {w.error}')
    load_before = zb.loadavg()
    zb.run_interleaved(workers, args.rounds, args.iters, log=log if args.verbose else None)
    load_after = zb.loadavg()
    labels = {}
    for w in workers:
        path = w.finish(os.path.join(work_dir, w.name.replace(' ', '_') + '_labels.npy'))
        if path:
            labels[w.name] = np.load(path)
    reference = labels.get('dygraph fp32')
    rows = zb.summarize(workers, reference, labels, reference=' '.join(zb.REFERENCE))
    rows += skipped
    title = (f'{os.path.relpath(cfg_path, REPO) if os.path.isabs(cfg_path) else cfg_path}, input '
             f'{"x".join(map(str, shape))}, {threads} threads, medians of {args.rounds} interleaved rounds x '
             f'{args.iters} run(s)')
    if load_before and load_after:
        title += f'; load average {load_before[0]:.2f} -> {load_after[0]:.2f}'
    facts = {'config': cfg_path, 'input_shape': list(shape), 'threads': threads, 'rounds': args.rounds,
             'iters': args.iters, 'loadavg_before': load_before, 'loadavg_after': load_after,
             'params_M': params / 1e6, 'GMACs': flops / 1e9, 'weights': weights_note, 'int8': calib_note}
    return title, rows, facts


BUDGET = {'bf16': 0.3, 'int8': 1.0}  # mIoU points below dygraph fp32 a reduced precision may lose


def accuracy_one(cfg_path, args, work_dir, log=print):
    """mIoU / aAcc of every path on the val set; returns (title, rows)."""
    import json
    import subprocess

    import zoo
    from zoo.engine.evaluator import evaluate
    from zoo.engine.inference import parse_test_config
    from zoo.engine.predictor import load_trained_model
    from zoo.export import export_model
    from zoo.export.quant import calibration_inputs, int8_step
    from zoo.utils.config import Config
    from zoo.utils.errors import ConfigError
    if not args.model_path:
        raise ConfigError('--accuracy needs --model_path (trained weights: reduced precision is judged on a '
                          'trained model)')
    cfg = Config(cfg_path, opts=args.opts)
    inputs = list(calibration_inputs(cfg, args.calib_images))
    export_dir = os.path.join(work_dir, 'export')

    export_model(cfg, export_dir, model_path=args.model_path, fmt='onnx', verbose=args.verbose,
                 extra_step=int8_step(inputs, verbose=args.verbose, calibration={'split': 'train'}))
    model = load_trained_model(cfg, args.model_path)
    dataset = zoo.build_dataset(cfg, 'val')
    res = evaluate(model, dataset, parse_test_config(cfg.test_config, where=cfg.where('test_config')),
                   print_detail=False)
    rows = [{'path': 'dygraph fp32 (val.py)', 'mIoU': res['mIoU'], 'aAcc': res['aAcc'], 'mAcc': res['mAcc']}]
    threads = args.threads or None
    for name, backend, precision, why in deploy_paths(args):
        if why:
            rows.append({'path': name, 'error': why})
            continue
        out = os.path.join(work_dir, name.replace(' ', '_') + '.json')
        cmd = [sys.executable, INFER, '--config', os.path.join(export_dir, 'deploy.yaml'), '--backend', backend,
               '--precision', precision, '--dataset_config', cfg_path, '--json', out]
        cmd += ['--cpu_threads', str(threads)] if threads else []
        cmd += ['--opts', *args.opts] if args.opts else []
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
        if r.returncode != 0:
            lines = r.stderr.strip().splitlines() or ['failed']
            rows.append({'path': name, 'error': lines[-1][:200]})
            continue
        with open(out) as f:
            m = json.load(f)
        row = {'path': name, 'mIoU': m['mIoU'], 'aAcc': m['aAcc'], 'mAcc': m['mAcc']}
        row['delta'] = 100 * (m['mIoU'] - res['mIoU'])
        if precision in BUDGET:
            row['budget'] = 'met' if row['delta'] >= -BUDGET[precision] else 'MISSED'
        rows.append(row)
        if args.verbose:
            log(f'{name}: mIoU {100 * m["mIoU"]:.2f}')
    title = (f'{cfg_path} on its val set ({len(dataset)} images), weights {args.model_path}; int8 calibrated on '
             f'{len(inputs)} training images; budgets: bf16 within {BUDGET["bf16"]} mIoU points of dygraph fp32, '
             f'int8 within {BUDGET["int8"]}')
    return title, rows


def format_accuracy(rows, title, markdown=False):
    head = ['path', 'mIoU %', 'aAcc %', 'mAcc %', 'mIoU - dygraph (points)', 'budget']

    def cells(r):
        if r.get('error'):
            return [f'{r["path"]} (n/a: {r["error"][:100]})', '-', '-', '-', '-', '-']
        return [r['path'], f'{100 * r["mIoU"]:.2f}', f'{100 * r["aAcc"]:.2f}', f'{100 * r["mAcc"]:.2f}',
                f'{r["delta"]:+.2f}' if 'delta' in r else '-', r.get('budget', '-')]
    if markdown:
        return '\n'.join([f'**{title}**', '', '| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
                         + ['| ' + ' | '.join(cells(r)) + ' |' for r in rows])
    from prettytable import PrettyTable
    t = PrettyTable(head)
    for r in rows:
        t.add_row(cells(r))
    return title + '\n' + t.get_string()


def cpu_summary():
    infer = _infer()
    flags = infer.cpu_flags()
    model = ''
    try:
        with open('/proc/cpuinfo') as f:
            model = next((ln.split(':', 1)[1].strip() for ln in f if ln.startswith('model name')), '')
    except OSError:
        pass
    keys = sorted(f for f in flags if f.startswith(('avx512', 'amx', 'avx_vnni', 'avx2', 'fma')))
    return f'{model}; {infer.default_threads()} cores; ' + ' '.join(keys)


def main(argv=None):
    args = parse_args(argv)
    if args.worker == 'dygraph':
        return dygraph_worker(args)
    import json
    jobs = []
    if args.suite:
        for cfg, (h, w), extra in SUITE:
            workers = []
            if extra == 'regseg' and args.torch_python and args.regseg_dir:
                workers.append(('pytorch official', f'{shlex.quote(args.torch_python)} '
                                f'{shlex.quote(os.path.join(REPO, "tools", "parity", "regseg_torch_worker.py"))} '
                                f'--official_dir {shlex.quote(args.regseg_dir)} --weights {{weights}} '
                                '--input {input} --threads {threads}'))
            jobs.append((os.path.join(REPO, cfg), [1, 3, h, w], workers))
    else:
        from zoo.benchmark import test_resolution
        from zoo.utils.config import Config
        for cfg in args.config:
            shape = ([1, 3, *test_resolution(Config(cfg, opts=args.opts))] if args.test_resolution
                     else args.input_shape or [1, 3, 512, 1024])
            jobs.append((cfg, shape, [tuple(e.split('=', 1)) for e in args.extra_worker]))
    from zoo.benchmark import format_table
    print(f'CPU: {cpu_summary()}', flush=True)
    results = []
    if args.work_dir:  # kept: the export, the int8 model and every worker's log
        os.makedirs(args.work_dir, exist_ok=True)
    with (contextlib.nullcontext(args.work_dir) if args.work_dir else tempfile.TemporaryDirectory()) as tmp:
        if args.accuracy:
            for i, (cfg, _, _) in enumerate(jobs):
                title, rows = accuracy_one(cfg, args, os.path.join(tmp, str(i)))
                print(format_accuracy(rows, title), flush=True)
                if args.markdown:
                    print(format_accuracy(rows, title, markdown=True), flush=True)
                results.append({'title': title, 'rows': rows})
            jobs = []
        for i, (cfg, shape, extra) in enumerate(jobs):
            title, rows, facts = benchmark_one(cfg, shape, args, os.path.join(tmp, str(i)), extra)
            print(format_table(rows, title), flush=True)
            print(f'  {facts["params_M"]:.2f} M parameters, {facts["GMACs"]:.1f} GMACs; {facts["weights"]}'
                  + (f'; {facts["int8"]}' if facts['int8'] else ''), flush=True)
            if args.markdown:
                print(format_table(rows, title, markdown=True), flush=True)
            results.append({'title': title, 'rows': rows, **facts})
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump({'cpu': cpu_summary(), 'tables': results}, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.path.insert(0, REPO)
    from zoo.utils.cli import main_wrapper
    main_wrapper(main)
