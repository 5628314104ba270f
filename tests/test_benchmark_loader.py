"""tools/data/benchmark_loader.py runs end to end (no timing asserted: speed is measured by
running the tool, see docs/data.md): generated pairs, a worker process per pipeline, the table."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_benchmark_loader_prints_ours_and_says_when_mmseg_is_missing():
    r = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'data', 'benchmark_loader.py'), '--num', '2',
                        '--rounds', '1'], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    assert lines[0].startswith('2 images of generated 2048x1024 pairs, 1 rounds, medians; load average')
    ours = next(ln for ln in lines if ln.startswith('ours '))
    assert float(ours.split()[1]) > 0
    has_mmseg = any(ln.startswith('mmseg ') for ln in lines)
    assert has_mmseg or 'mmseg: not importable here' in r.stdout
    assert 'RandomRescale' in r.stdout and 'PhotoMetricDistortion' in r.stdout  # the per-stage table


def test_benchmark_loader_bad_root_is_one_line():
    r = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'data', 'benchmark_loader.py'),
                        '--dataset_root', '/nonexistent/cityscapes'], capture_output=True, text=True, cwd=REPO,
                       timeout=300)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == \
        "error: --dataset_root '/nonexistent/cityscapes' does not exist"
