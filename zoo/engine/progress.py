"""Progress and timing for long loops, readable in a terminal and in a log file.

* :class:`Progress`: a tqdm bar when the stream is a terminal; otherwise (a pipe, a file,
  ``paddle.distributed.launch``'s ``workerlog.N``) one log line every quarter of the items, since
  a bar there turns into one ever-growing line of carriage returns.
* :class:`StepTimer`: the ETA from the mean step time since the start, skipping the first
  steps (kernel selection and allocator warm-up make them slow), plus the time the remaining
  evaluations will take at their mean duration. A median of the last few steps swings with
  every evaluation and data-loader hiccup.
"""
import math
import sys
import time

from ..utils.logger import logger


def is_tty(stream):
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def fmt_duration(seconds):
    """``'1:02:03'`` / ``'2:03'`` / ``'4.2 s'``."""
    seconds = max(float(seconds), 0.0)
    if seconds < 60:
        return f'{seconds:.1f} s'
    s = int(round(seconds))
    h, m, sec = s // 3600, s // 60 % 60, s % 60
    return f'{h}:{m:02d}:{sec:02d}' if h else f'{m}:{sec:02d}'


class Progress:
    """``update()`` once per item; ``close()`` at the end. ``enabled=False`` shows nothing
    (other ranks)."""

    def __init__(self, total, desc, enabled=True, stream=None, lines=None):
        self.total = int(total)
        self.desc = desc
        self.enabled = enabled and self.total > 0
        self.stream = stream if stream is not None else sys.stderr
        self.lines = (not is_tty(self.stream)) if lines is None else lines
        self.every = max(1, math.ceil(self.total / 4))
        self.n = 0
        self.t0 = time.perf_counter()
        self.bar = None
        if self.enabled and not self.lines:
            from tqdm import tqdm
            self.bar = tqdm(total=self.total, desc=desc, file=self.stream, dynamic_ncols=True, leave=False)

    def update(self, n=1):
        self.n += n
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(n)
        elif self.n // self.every > (self.n - n) // self.every or self.n == self.total:  # a quarter crossed
            el = time.perf_counter() - self.t0
            logger.info(f'[{self.desc}] {self.n}/{self.total} ({100 * self.n / self.total:.0f}%), '
                        f'{fmt_duration(el)}, {self.n / max(el, 1e-9):.1f}/s')

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StepTimer:
    """Mean step time since the start (after ``skip`` steps) -> ETA."""

    def __init__(self, skip=5):
        self.skip = skip
        self.seen = 0
        self.total = 0.0
        self.count = 0
        self.eval_total = 0.0
        self.eval_count = 0

    def step(self, seconds):
        self.seen += 1
        if self.seen > self.skip:
            self.total += seconds
            self.count += 1

    def evaluation(self, seconds):
        self.eval_total += seconds
        self.eval_count += 1

    @property
    def mean(self):
        return self.total / self.count if self.count else None

    def eta(self, remaining_steps, remaining_evals=0):
        """Seconds left, or None until a step past the warm-up has been timed."""
        if self.mean is None:
            return None
        eval_mean = self.eval_total / self.eval_count if self.eval_count else 0.0
        return self.mean * remaining_steps + eval_mean * remaining_evals
