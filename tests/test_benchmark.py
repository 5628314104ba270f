"""tools/benchmark.py and zoo/benchmark.py: one table with every path, each in its own process,
interleaved rounds, ratios to Paddle Inference fp32, agreement with dygraph, peak memory; a path
that cannot run gets a row saying why instead of stopping the table. (Timings themselves are
never asserted: speed is measured by the tool, not by tests.)"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import zoo
import zoo.benchmark as zb
from zoo.utils.config import Config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(REPO, 'configs', 'demo', 'fast_scnn_demo_96x192_1k.yml')


def test_count_flops_and_params_of_a_conv_net():
    import paddle.nn as nn

    class Net(nn.Layer):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2D(3, 8, 3, stride=2, padding=1)
            self.b = nn.Conv2D(8, 5, 1)

        def forward(self, x):
            return [self.b(self.a(x))]

    net = Net()
    assert zb.count_params(net) == 8 * 27 + 8 + 5 * 8 + 5
    # conv 3->8 3x3 stride 2 on 32x48 (16x24 out) + conv 8->5 1x1
    assert zb.count_flops(net, [1, 3, 32, 48]) == 16 * 24 * 8 * 27 + 16 * 24 * 5 * 8


def _python_worker(tmp_path, body):
    script = tmp_path / 'w.py'
    script.write_text('import sys\nsys.path.insert(0, sys.argv[1])\n' + body)
    return [sys.executable, str(script), REPO]


def test_workers_interleave_and_a_dead_worker_becomes_a_row(tmp_path):
    ok = _python_worker(tmp_path, 'import os, numpy as np\n'
                                  'sys.path.insert(0, os.path.join(sys.argv[1], "deploy", "python"))\n'
                                  'import infer\n'
                                  'infer.serve(lambda: np.ones((1, 2, 3, 4)), lambda o: o.argmax(1), describe="ones")\n')
    (tmp_path / 'bad.py').write_text('raise SystemExit("error: no model here")\n')
    workers = [zb.Worker('good', ok, log_path=str(tmp_path / 'good.log')),
               zb.Worker('bad', [sys.executable, str(tmp_path / 'bad.py')], log_path=str(tmp_path / 'bad.log'))]
    for w in workers:
        w.wait_ready(timeout=120)
    zb.run_interleaved(workers, rounds=3, iters=2, gap=0.01)
    labels = {w.name: np.load(p) for w in workers if (p := w.finish(str(tmp_path / f'{w.name}.npy')))}
    rows = zb.summarize(workers, labels['good'], labels, reference='good')
    good, bad = rows
    assert good['runs'] == 6 and good['ratio'] == 1.0 and good['agreement'] == 1.0 and good['peak_rss_mb'] > 10
    assert bad['error'] and 'no model here' in bad['error'] and 'median_ms' not in bad
    table = zb.format_table(rows, 'title')
    assert 'bad (n/a: ' in table and table.count('\n') >= 5


@pytest.mark.skipif(not os.path.isfile(DEMO), reason='demo config missing')
def test_tool_prints_one_table_with_every_requested_path(tmp_path):
    out = tmp_path / 'b.json'
    r = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'benchmark.py'), '--config', DEMO,
                        '--input_shape', '1', '3', '64', '128', '--rounds', '2', '--threads', '1',
                        '--paths', 'paddle:fp32', 'onnxruntime:fp32', 'paddle:int8', '--json', str(out),
                        '--work_dir', str(tmp_path)], capture_output=True, text=True, cwd=REPO, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count('x PI fp32') == 1, r.stdout  # the table is printed once
    assert 'medians of 2 interleaved rounds' in r.stdout and 'input 1x3x64x128' in r.stdout
    assert 'Removing initializer' not in r.stdout + r.stderr
    rows = {row['path']: row for row in json.loads(out.read_text())['tables'][0]['rows']}
    assert set(rows) == {'dygraph fp32', 'paddle fp32', 'onnxruntime fp32', 'paddle int8'}
    assert rows['paddle fp32']['ratio'] == 1.0 and rows['paddle fp32']['runs'] == 2
    assert rows['onnxruntime fp32']['ratio'] > 0 and rows['onnxruntime fp32']['peak_rss_mb'] > 50
    assert rows['paddle fp32']['agreement'] > 0.99  # calibrated random weights, fp32: same argmax
    assert 'cannot run' in rows['paddle int8']['error']


def test_test_resolution_and_calibrated_random_weights():
    cfg = Config(DEMO)
    assert zb.test_resolution(cfg) == (256, 512)
    model = zb.calibrate_bn(zoo.build_model(cfg), shape=(2, 3, 64, 128))
    import paddle
    with paddle.no_grad():
        logits = model(paddle.to_tensor(np.random.RandomState(0).uniform(-2, 2, (1, 3, 64, 128)).astype('float32')))[0]
    assert 3.0 < float(logits.numpy().std()) < 5.0  # a trained model's spread (scale_classifier)
