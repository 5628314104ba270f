"""Speed of a model on every path a user can deploy it on, in one table (tools/benchmark.py).

Every path (Paddle dygraph, Paddle Inference fp32/bf16, ONNX Runtime fp32/int8, OpenVINO
fp32/bf16/int8, and optionally a foreign reference such as the official PyTorch model) runs in
its own process (two math runtimes in one process slow each other down). A driver starts them
all, then interleaves timed rounds: path 1, ~0.5 s idle, path 2, ... round 2 ... so a change in
the machine's load hits every path alike. Medians over the rounds, the ratio of each path to our
Paddle Inference fp32 (the default of ``deploy/python/infer.py``), the argmax agreement of each
path with dygraph fp32 on the same input, and each process's peak resident memory.

Workers speak a line protocol on stdin/stdout (``run K``, ``save PATH``, ``stats``, ``quit``;
answers are JSON lines prefixed ``@@``), implemented once by ``serve`` in
``deploy/python/infer.py`` (``--benchmark_worker``), which tools/benchmark.py's dygraph worker and
the official-PyTorch worker (tools/parity/regseg_torch_worker.py) import too; this module is
the driver side.

FLOPs count multiply-accumulates of convolutions (incl. transposed) and linear layers, one
MAC = one FLOP, the convention of ``paddle.flops`` and mmcv's ``get_model_complexity_info``
(``paddle.flops`` itself fails under numpy 2 in Paddle 3.2.2).
"""
import json
import queue
import statistics
import subprocess
import threading
import time

import numpy as np
import paddle

# The nominal image size (H, W) of each dataset's val images, for "test resolution".
DATASET_IMAGE_SIZE = {'Cityscapes': (1024, 2048), 'ADE20K': (512, 683), 'PascalVOC': (500, 375),
                      'PascalContext': (375, 500), 'COCOStuff': (480, 640), 'DemoShapes': (256, 512)}
# backend, precision: every path of the table, in its order
DEPLOY_PATHS = [('paddle', 'fp32'), ('paddle', 'bf16'), ('onnxruntime', 'fp32'), ('onnxruntime', 'int8'),
                ('openvino', 'fp32'), ('openvino', 'bf16'), ('openvino', 'int8')]
REFERENCE = ('paddle', 'fp32')  # ratios are to this path
PROTOCOL_PREFIX = '@@ '


# -- model facts ----------------------------------------------------------------------

def count_params(model):
    return int(sum(int(np.prod(p.shape)) for p in model.parameters()))


def count_flops(model, input_shape):
    """Multiply-accumulates of Conv2D / Conv2DTranspose / Linear for one forward pass on zeros."""
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
            model(paddle.zeros(input_shape, dtype='float32'))
    finally:
        for h in hooks:
            h.remove()
    return total[0]


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


def calibrate_bn(model, shape=(2, 3, 64, 96), seed=0, num_classes=None):
    """Random weights that behave like trained ones, for speed and parity checks.

    BatchNorm running statistics = the statistics of one random batch (momentum 0), each
    variance floored at its layer's median (a dead channel would otherwise get a 1/sqrt(eps) =
    316x gain that amplifies float32 rounding far beyond what a trained model sees); then the
    logits are given a trained model's spread (:func:`scale_classifier`). In eval mode the
    network then reproduces the train-mode flow, where every layer sees normalized inputs.
    (Mixing in the initial (0, 1) statistics instead let a deep random ResNeSt grow its stage-4
    features to ~1e4; a batch of 2 left its split-attention BNs, which see one pooled value per
    image, with near-zero variances: use a batch of 8 for those.)"""
    bns = [m for m in model.sublayers() if isinstance(m, paddle.nn.layer.norm._BatchNormBase)]
    saved = [m._momentum for m in bns]
    for m in bns:
        m._momentum = 0.0
    model.train()
    x = np.random.RandomState(seed).uniform(-2, 2, shape).astype('float32')
    with paddle.no_grad():
        model(paddle.to_tensor(x))
    for m, mom in zip(bns, saved):
        m._momentum = mom
        var = m._variance.numpy()
        m._variance.set_value(np.maximum(var, float(np.median(var)) + 1e-6).astype('float32'))
    model.eval()
    scale_classifier(model, x, num_classes)
    return model


def scale_classifier(model, x, num_classes=None, target_std=4.0):
    """Give the logits a trained model's spread. The classifier's N(0, 0.01) init makes random
    logits ~100x smaller than the features before it, so float32 reordering noise of the
    features (identical in any two correct backends) would look large next to the logit
    range. The classifier is a 1x1 conv followed only by a linear resize, so scaling its
    weight and bias scales the logits exactly."""
    n = num_classes or getattr(model, 'num_classes', None)
    convs = [(name, m) for name, m in model.named_sublayers()
             if isinstance(m, paddle.nn.Conv2D) and 'aux' not in name and m.weight.shape[0] == n]
    named = [c for c in convs if c[0].endswith(('conv_seg', 'cls', 'classifier'))]
    if not (named or convs):
        return
    conv = (named or convs)[-1][1]
    with paddle.no_grad():
        std = float(model(paddle.to_tensor(x))[0].numpy().std())
        if std <= 0:
            return
        f = target_std / std
        conv.weight.set_value(conv.weight * f)
        if conv.bias is not None:
            conv.bias.set_value(conv.bias * f)


# -- the worker protocol --------------------------------------------------------------

class Worker:
    """One path in its own process, driven over the line protocol."""

    def __init__(self, name, cmd, env=None, cwd=None, log_path=None):
        self.name, self.cmd = name, cmd
        self.error = None
        self.describe = ''
        self.wall, self.cpu = [], []
        self.peak_rss_mb = None
        self.log = open(log_path, 'w') if log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, env=env, cwd=cwd, bufsize=1)
        # a thread reads the worker's stdout: answers go to the queue, anything else (a library's
        # prints) is dropped; None marks the end of the stream
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith(PROTOCOL_PREFIX):
                self.lines.put(json.loads(line[len(PROTOCOL_PREFIX):]))
        self.lines.put(None)

    def _answer(self, timeout):
        try:
            ans = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f'no answer within {timeout:.0f} s') from None
        if ans is None:
            raise RuntimeError(self._failure())
        return ans

    def _failure(self):
        self.proc.wait(timeout=30)
        tail = ''
        if hasattr(self.log, 'name'):
            self.log.flush()
            with open(self.log.name, encoding='utf-8', errors='replace') as f:
                lines = [ln.strip() for ln in f if ln.strip()]
            picked = [ln for ln in lines if ln.startswith('error:') or 'Error' in ln] or lines
            tail = picked[-1][:300] if picked else ''
        return f'exited with status {self.proc.returncode}' + (f': {tail}' if tail else '')

    def call(self, command, timeout=3600):
        if self.error:
            return None
        try:
            self.proc.stdin.write(command + '\n')
            self.proc.stdin.flush()
            return self._answer(timeout)
        except (BrokenPipeError, RuntimeError, TimeoutError, OSError) as e:
            self.error = str(e) if not isinstance(e, BrokenPipeError) else self._failure()
            self.kill()
            return None

    def wait_ready(self, timeout=3600):
        try:
            ans = self._answer(timeout)
            self.describe = ans.get('describe', '')
        except (RuntimeError, TimeoutError, OSError) as e:
            self.error = str(e)
            self.kill()

    def run(self, iters):
        ans = self.call(f'run {iters}')
        if ans:
            self.wall += ans['wall_ms']
            self.cpu += ans['cpu_ms']

    def finish(self, labels_path=None):
        if labels_path and self.call(f'save {labels_path}') is None:
            labels_path = None
        ans = self.call('stats')
        if ans:
            self.peak_rss_mb = ans['peak_rss_mb']
        self.call('quit', timeout=60)
        self.kill()
        return labels_path

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if hasattr(self.log, 'close'):
            self.log.close()


def run_interleaved(workers, rounds, iters=1, gap=0.5, log=None):
    """``rounds`` rounds; in each, every live worker does ``iters`` timed runs in turn, with
    ``gap`` seconds idle before each (a busy thread pool of the previous runtime slows the next
    one: measured 101 ms vs 62 ms for OpenVINO fp32 without / with the gap)."""
    for r in range(rounds):
        for w in workers:
            if w.error:
                continue
            time.sleep(gap)
            w.run(iters)
        if log:
            log(f'round {r + 1}/{rounds}: ' + ', '.join(f'{w.name} {w.wall[-1]:.0f} ms' for w in workers
                                                      if w.wall and not w.error))


def loadavg():
    try:
        with open('/proc/loadavg') as f:
            return [float(v) for v in f.read().split()[:3]]
    except OSError:
        return None


# -- the table ------------------------------------------------------------------------

def summarize(workers, reference_labels=None, labels=None, reference=None):
    """One row per worker: medians, ratio to the reference path, agreement, memory."""
    labels = labels or {}
    rows = []
    ref = next((w for w in workers if w.name == reference and w.wall), None)
    ref_ms = statistics.median(ref.wall) if ref else None
    for w in workers:
        row = {'path': w.name, 'describe': w.describe, 'error': w.error, 'runs': len(w.wall),
               'peak_rss_mb': w.peak_rss_mb}
        if w.wall:
            row['median_ms'] = statistics.median(w.wall)
            row['mean_ms'] = statistics.fmean(w.wall)
            row['min_ms'] = min(w.wall)
            row['cpu_median_ms'] = statistics.median(w.cpu)
            row['ratio'] = row['median_ms'] / ref_ms if ref_ms else None
        lab = labels.get(w.name)
        if lab is not None and reference_labels is not None and lab.shape == reference_labels.shape:
            row['agreement'] = float((lab == reference_labels).mean())
        rows.append(row)
    return rows


COLUMNS = [('path', 'path'), ('median_ms', 'median ms'), ('ratio', 'x PI fp32'), ('min_ms', 'min ms'),
           ('cpu_median_ms', 'CPU ms'), ('agreement', 'argmax = dygraph'), ('peak_rss_mb', 'peak MB'),
           ('runs', 'runs')]


def _cell(key, value, row):
    if key == 'path' and row.get('error'):
        return f'{value} (n/a: {row["error"][:120]})'
    if value is None:
        return '-'
    if key == 'ratio':
        return f'{value:.2f}'
    if key == 'agreement':
        return f'{100 * value:.2f} %'
    if isinstance(value, float):
        return f'{value:.1f}' if value < 1000 else f'{value:.0f}'
    return str(value)


def format_table(rows, title, markdown=False):
    head = [h for _, h in COLUMNS]
    cells = [[_cell(k, r.get(k), r) for k, _ in COLUMNS] for r in rows]
    if markdown:
        lines = [f'**{title}**', '', '| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
        return '\n'.join(lines + ['| ' + ' | '.join(c) + ' |' for c in cells])
    from prettytable import PrettyTable
    table = PrettyTable(head)
    table.align = 'r'
    table.align['path'] = 'l'
    for c in cells:
        table.add_row(c)
    return title + '\n' + table.get_string()
