"""Known, harmless third-party messages dropped where they are produced (``verbose`` keeps them).

Paddle's C++ side writes through glog straight to file descriptor 2, so Python's ``warnings``
and ``logging`` filters cannot reach it; :func:`filtered_stderr` points descriptor 2 at a
temporary file for the duration of a block and copies every line that is not known noise back
to the real stderr afterwards (errors and unknown warnings still show).
"""
import contextlib
import os
import re
import sys
import tempfile
import warnings

# Every entry says why it is noise.
KNOWN_NOISE = (
    # paddle.jit.save (PIR) on a residual ``x + f(x)`` in Paddle 3.2.2: the dygraph-to-static
    # translator notes that it cannot bind an ``out=`` tensor and builds a new value instead,
    # which is what the program needs anyway; the saved program is unaffected.
    re.compile(r'not support input out tensor'),
    # paddle/utils/cpp_extension on import: ccache speeds up compiling custom C++ ops, which
    # export never does.
    re.compile(r'No ccache found'),
    # ONNX Runtime's graph optimizer (int8 quantization's pre-processing session) logs each
    # constant it folds away; the model is unaffected.
    re.compile(r'Removing initializer'),
)


@contextlib.contextmanager
def filtered_stderr(verbose=False, patterns=KNOWN_NOISE):
    """Drop lines matching ``patterns`` from everything written to fd 2 inside the block."""
    if verbose:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode='w+b') as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            with warnings.catch_warnings():
                for p in patterns:
                    warnings.filterwarnings('ignore', message=f'.*{p.pattern}')
                yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode('utf-8', 'replace')
            kept = [ln for ln in text.splitlines(keepends=True) if not any(p.search(ln) for p in patterns)]
            if kept:
                sys.stderr.write(''.join(kept))
                sys.stderr.flush()
