"""Quiet by default: known third-party messages that say nothing to a user of this project are
held back; a tool's ``--verbose`` shows them (including those raised while importing).

Each entry of :data:`KNOWN_WARNINGS` names the message, the module that raises it and why it is
held. Only those exact warnings are affected; every other warning shows as usual. Held warnings
are counted, so ``--verbose`` can replay the ones already raised at import time.

:func:`install` also lowers the level of Paddle's C++ logging (glog) to warnings, unless the user
set ``GLOG_minloglevel`` or the command line has ``--verbose``: under ``paddle.distributed.launch``
its INFO lines (``tcp_utils.cc] The server starts to listen ...``) fill ``workerlog.N``. glog reads
the variable once, when Paddle loads, hence before any flag is parsed.
:func:`init_parallel_env` holds back the table of "Modified FLAGS" Paddle prints to stderr when
a distributed run starts (``FLAGS_enable_pir_in_executor``, set by the launcher itself).
"""
import contextlib
import io
import os
import re
import sys
import tempfile
import warnings

# (message regex, module that warns, why it is held back)
KNOWN_WARNINGS = (
    (r'No ccache found', r'paddle\.utils\.cpp_extension',
     'Paddle looks for ccache (a C++ build cache for custom operators) on import; nothing here compiles C++'),
    (r'When training, we now always track global mean and variance', r'paddle\.nn',
     "Paddle's BatchNorm says so at every construction in train mode; that is the behaviour the models expect"),
    (r'Non compatible API\. Please refer to .*convert_from_pytorch', r'paddle\.utils\.decorator_utils',
     'Paddle notes at the first paddle.split / paddle.sort ... of a process that the call differs from its '
     'PyTorch namesake; the models call Paddle\'s API with its own semantics'),
)

_held = []          # (message, category, filename, lineno) of warnings held back so far
_state = {'verbose': False, 'installed': False, 'previous': None}


def _known(message, filename):
    text, path = str(message), str(filename).replace(os.sep, '.')
    return any(re.search(pattern, text) and re.search(module, path) for pattern, module, _ in KNOWN_WARNINGS)


def _showwarning(message, category, filename, lineno, file=None, line=None):
    if not _state['verbose'] and _known(message, filename):
        _held.append((str(message), category, filename, lineno))
        return
    _state['previous'](message, category, filename, lineno, file, line)


def install():
    """Hold the known warnings back (called by ``zoo/__init__.py`` before Paddle is imported)."""
    if _state['installed']:
        return
    _state['previous'] = warnings.showwarning
    warnings.showwarning = _showwarning
    for pattern, module, _ in KNOWN_WARNINGS:
        # 'always' so repeats reach the hook (and are counted) instead of being deduplicated silently
        warnings.filterwarnings('always', message=pattern, module=module)
    if '--verbose' not in sys.argv[1:]:
        os.environ.setdefault('GLOG_minloglevel', '1')  # INFO off; warnings and errors stay
    _state['installed'] = True


def init_parallel_env():
    """``paddle.distributed.init_parallel_env()`` without its "Modified FLAGS" table unless verbose
    (shown anyway if the call fails)."""
    import paddle.distributed as dist
    if _state['verbose']:
        return dist.init_parallel_env()
    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf):
            return dist.init_parallel_env()
    except BaseException:
        sys.stderr.write(buf.getvalue())
        raise


def quiet_third_party(verbose=False):
    """A tool's ``--verbose``: show the known warnings from now on and replay those held so far."""
    install()
    _state['verbose'] = bool(verbose)
    if verbose:
        for message, category, filename, lineno in _held:
            _state['previous'](category(message), category, filename, lineno, sys.stderr)
        _held.clear()


def held_count():
    return len(_held)


# -- C++ output on file descriptor 2 (zoo/export: paddle.jit.save, ONNX Runtime quantization) ----
# Paddle's glog and ONNX Runtime's logger write straight to fd 2, past Python's warning filters:
# :func:`filtered_stderr` points fd 2 at a temporary file for the duration of a block and copies
# every line that is not known noise back to the real stderr afterwards (errors and unknown
# warnings still show).
# Every entry says why it is noise.
KNOWN_STDERR = (
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
def filtered_stderr(verbose=False, patterns=KNOWN_STDERR):
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
