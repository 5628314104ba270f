"""Run a tool as its own process with the tiny test model registered:
``python tests/_run_tool.py tools/train.py --config ...`` (what the user runs, plus ``_tiny``).

Fault injection for the reliability tests (test code only, set through the environment):

* ``ZOO_TEST_PAUSE_SAVE=<file>:<n>``: the n-th ``paddle.save`` writes half its file, creates
  ``<file>`` and sleeps (the test kills the process there: a kill in the middle of a save);
* ``ZOO_TEST_PAUSE_PRUNE=<file>``: pruning deletes one file of the old checkpoint's trash
  folder, creates ``<file>`` and sleeps (a kill in the middle of a prune);
* ``ZOO_TEST_STEP_SLEEP=<seconds>``: every training step sleeps (keeps a run alive for a while);
* ``ZOO_TEST_HOLD=<file>:<n>``: training step n waits until ``<file>`` exists.
"""
import os
import runpy
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import zoo  # noqa: E402,F401  (first, as the tools do: it silences paddle's import-time warnings)
import _tiny  # noqa: E402,F401  (registers TinySegNet)


def _touch(path):
    open(path, 'w').close()


def _install_faults():
    import paddle
    pause_save = os.environ.get('ZOO_TEST_PAUSE_SAVE')
    if pause_save:
        marker, n = pause_save.rsplit(':', 1)
        real_save, calls = paddle.save, [0]

        def save(obj, path, *a, **k):
            calls[0] += 1
            if calls[0] == int(n):
                real_save(obj, path, *a, **k)
                size = os.path.getsize(path)
                with open(path, 'r+b') as f:
                    f.truncate(size // 2)
                _touch(marker)
                time.sleep(600)
            return real_save(obj, path, *a, **k)
        paddle.save = save
    pause_prune = os.environ.get('ZOO_TEST_PAUSE_PRUNE')
    if pause_prune:
        from zoo.utils import atomic
        real_rmtree = atomic.shutil.rmtree

        def rmtree(path, *a, **k):
            for dirpath, _, files in os.walk(path):
                if files:
                    os.remove(os.path.join(dirpath, files[0]))
                    break
            _touch(pause_prune)
            time.sleep(600)
            return real_rmtree(path, *a, **k)

        class _Shutil:
            def __getattr__(self, name):
                return rmtree if name == 'rmtree' else getattr(__import__('shutil'), name)
        atomic.shutil = _Shutil()
    step_sleep = float(os.environ.get('ZOO_TEST_STEP_SLEEP', 0) or 0)
    hold = os.environ.get('ZOO_TEST_HOLD')
    if step_sleep or hold:
        from zoo.engine.trainer import Trainer
        real_forward, steps = Trainer._forward_loss, [0]
        hold_file, hold_step = hold.rsplit(':', 1) if hold else (None, -1)

        def slow_forward(self, img, label):
            steps[0] += 1
            time.sleep(step_sleep)
            while steps[0] == int(hold_step) and not os.path.exists(hold_file):
                time.sleep(0.1)
            return real_forward(self, img, label)
        Trainer._forward_loss = slow_forward


if __name__ == '__main__':
    tool = sys.argv[1]
    sys.argv = sys.argv[1:]
    _install_faults()
    runpy.run_path(tool, run_name='__main__')
