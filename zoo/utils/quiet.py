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
