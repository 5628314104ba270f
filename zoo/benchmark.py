"""Speed of a model on the paths a user can deploy it on, measured on one input in one run.

For each config: parameters, FLOPs, latency of the dygraph model (``paddle.no_grad``), of the
exported program in Paddle Inference (oneDNN, fp32) and of the same program converted to
ONNX in ONNX Runtime, plus the ratios. The exported paths go through
``deploy/python/infer.py``'s ``Predictor`` (loaded from the repository), so the numbers are
those of the deployment script, with its settings, not of a look-alike.

FLOPs count multiply-accumulates of convolutions (incl. transposed) and linear layers, one
MAC = one FLOP, the convention of ``paddle.flops`` and mmcv's ``get_model_complexity_info``
(``paddle.flops`` itself fails under numpy 2 in Paddle 3.2.2).
"""
import importlib.util
import os
import tempfile
import time

import numpy as np
import paddle

from .builder import as_config, build_model
from .export import export_model, without_pretrained
from .utils.errors import ConfigError

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY_SCRIPT = os.path.join(_REPO, 'deploy', 'python', 'infer.py')
# The nominal image size (H, W) of each dataset's val images, for "test resolution".
DATASET_IMAGE_SIZE = {'Cityscapes': (1024, 2048), 'ADE20K': (512, 683), 'PascalVOC': (500, 375),
                      'PascalContext': (375, 500), 'COCOStuff': (480, 640), 'DemoShapes': (256, 512)}


def load_deploy_module():
    """``deploy/python/infer.py`` as a module (it is a script, not part of the library)."""
    if not os.path.isfile(DEPLOY_SCRIPT):
        raise ConfigError(f'{DEPLOY_SCRIPT} not found: the benchmark runs from a source checkout')
    spec = importlib.util.spec_from_file_location('zoo_deploy_infer', DEPLOY_SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def count_params(model):
    return int(sum(int(np.prod(p.shape)) for p in model.parameters()))


def count_flops(model, input_shape, x=None, return_output=False):
    """Multiply-accumulates of Conv2D / Conv2DTranspose / Linear for one forward pass (on ``x``
    if given, else zeros); with ``return_output``, also the pass's first output (numpy)."""
    total = [0]
    hooks = []

    def conv_hook(layer, inputs, output):
        w = layer.weight  # [out, in/groups, kh, kw] (transposed: [in, out/groups, kh, kw])
        per_out = int(np.prod(w.shape[1:]))
        if isinstance(layer, paddle.nn.Conv2DTranspose):
            total[0] += int(np.prod(inputs[0].shape)) * int(np.prod(w.shape[1:]))
        else:
            total[0] += int(np.prod(output.shape)) * per_out

    def linear_hook(layer, inputs, output):
        total[0] += int(np.prod(output.shape)) * int(layer.weight.shape[0])

    for layer in model.sublayers():
        if isinstance(layer, (paddle.nn.Conv2D, paddle.nn.Conv2DTranspose)):
            hooks.append(layer.register_forward_post_hook(conv_hook))
        elif isinstance(layer, paddle.nn.Linear):
            hooks.append(layer.register_forward_post_hook(linear_hook))
    try:
        with paddle.no_grad():
            out = model(paddle.zeros(input_shape, dtype='float32') if x is None else paddle.to_tensor(x))
    finally:
        for h in hooks:
            h.remove()
    return (total[0], out[0].numpy()) if return_output else total[0]


def time_calls(fn, warmup, iters):
    """Run ``fn`` warmup + iters times; milliseconds of the timed calls (mean, p50, p90)."""
    for _ in range(warmup):
        fn()
    ms = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1000.0)
    ms = np.asarray(ms)
    return {'mean': float(ms.mean()), 'p50': float(np.percentile(ms, 50)), 'p90': float(np.percentile(ms, 90))}


def test_resolution(cfg):
    """(H, W) a config evaluates at: its dataset's image size through its val resizes."""
    ds = cfg.get('val_dataset.type')
    h, w = DATASET_IMAGE_SIZE.get(ds, (512, 1024))
    for t in cfg.get('val_dataset.transforms') or []:
        if t.get('type') == 'Resize':
            tw, th = t.get('target_size', (2048, 1024))
            if t.get('keep_ratio'):
                f = min(max(tw, th) / max(h, w), min(tw, th) / min(h, w))
                h, w = int(h * f + 0.5), int(w * f + 0.5)
            else:
                h, w = th, tw
        elif t.get('type') == 'ResizeByShort':
            s = t.get('short_size', 1024) / min(h, w)
            h, w = int(round(h * s)), int(round(w * s))
    return h, w


def benchmark_config(config, input_shape, threads=2, warmup=2, iters=5, opts=None, onnx=True,
                     dygraph=True, work_dir=None, dygraph_iters=None):
    """One row: params, FLOPs, dygraph / Paddle Inference / ONNX Runtime latency and ratios.

    Latencies are medians of ``iters`` timed runs after ``warmup`` untimed ones (dygraph:
    ``dygraph_iters`` timed runs, default ``iters``, after the one run that gives the reference
    logits and the FLOPs; ``dygraph_iters=0`` times that run itself: a large model's dygraph
    forward takes minutes on CPU). The exported model outputs
    raw logits (``output_op none``) so the three paths compute the same thing;
    ``max_abs_diff`` records how far the exported logits are from dygraph's.
    """
    cfg = as_config(config, opts=opts) if not hasattr(config, 'dic') else config
    cfg = without_pretrained(cfg)  # speed does not depend on the weights; no downloads
    deploy = load_deploy_module()
    model = build_model(cfg)
    model.eval()
    x = np.random.RandomState(0).uniform(-1, 1, input_shape).astype('float32')
    t0 = time.perf_counter()
    flops, ref = count_flops(model, input_shape, x, return_output=True)  # also the reference logits
    first_ms = (time.perf_counter() - t0) * 1000.0
    row = {'model': cfg.get('model.type'), 'config': cfg.path, 'input': 'x'.join(map(str, input_shape)),
           'threads': threads, 'params_M': count_params(model) / 1e6, 'GFLOPs': flops / 1e9}
    n = iters if dygraph_iters is None else dygraph_iters
    if dygraph and n == 0:  # a model that takes minutes per pass: time the reference pass itself
        row['dygraph_ms'] = row['dygraph_mean_ms'] = first_ms
    elif dygraph:
        xt = paddle.to_tensor(x)
        with paddle.no_grad():
            t = time_calls(lambda: model(xt)[0].numpy(), max(warmup - 1, 0), n)
        row['dygraph_ms'], row['dygraph_mean_ms'] = t['p50'], t['mean']
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        out_dir = os.path.join(tmp, 'export')
        fmt = 'onnx' if onnx and importlib.util.find_spec('paddle2onnx') else 'paddle'
        # export the very weights dygraph ran (folds the BNs of ``model`` in place: dygraph is done)
        export_model(cfg, out_dir, model=model, output_op='none', fmt=fmt)
        dcfg = deploy.DeployConfig(os.path.join(out_dir, 'deploy.yaml'))
        pred = deploy.Predictor(dcfg, backend='paddle', enable_mkldnn=True, cpu_threads=threads)
        out = pred.run(x)
        t = time_calls(lambda: pred.run(x), warmup, iters)
        row['infer_ms'], row['infer_mean_ms'] = t['p50'], t['mean']
        if ref is not None:
            row['max_abs_diff'] = float(np.abs(out - ref).max())
        if fmt == 'onnx' and importlib.util.find_spec('onnxruntime'):
            sess = deploy.Predictor(dcfg, backend='onnxruntime', cpu_threads=threads)
            sess.run(x)
            t = time_calls(lambda: sess.run(x), warmup, iters)
            row['ort_ms'], row['ort_mean_ms'] = t['p50'], t['mean']
    if row.get('dygraph_ms'):
        row['dygraph/infer'] = row['dygraph_ms'] / row['infer_ms']
    if row.get('ort_ms'):
        row['infer/ort'] = row['infer_ms'] / row['ort_ms']
    return row


COLUMNS = ['model', 'input', 'threads', 'params_M', 'GFLOPs', 'dygraph_ms', 'infer_ms', 'ort_ms',
           'dygraph/infer', 'infer/ort', 'max_abs_diff', 'config']


def _cells(r):
    cells = []
    for c in COLUMNS:
        v = r.get(c)
        if v is None:
            cells.append('-')
        elif c == 'max_abs_diff':
            cells.append(f'{v:.1e}')
        elif isinstance(v, float):
            cells.append(f'{v:.2f}' if c.endswith(('_M', 'GFLOPs', '/infer', '/ort')) else f'{v:.1f}')
        else:
            cells.append(str(v))
    return cells


def format_rows(rows):
    """A prettytable of benchmark rows (numbers rounded for reading)."""
    from prettytable import PrettyTable
    table = PrettyTable(COLUMNS)
    for r in rows:
        table.add_row(_cells(r))
    return table.get_string()


def markdown_rows(rows):
    """The same rows as a Markdown table (docs/benchmark.md)."""
    lines = ['| ' + ' | '.join(COLUMNS) + ' |', '|' + ' --- |' * len(COLUMNS)]
    lines += ['| ' + ' | '.join(_cells(r)) + ' |' for r in rows]
    return '\n'.join(lines)
