"""Make Paddle's DataLoader fail cleanly: a dataset's error reaches the main thread, and no
worker outlives the process that started it.

Paddle 3.2.2's DataLoader hides a dataset's exception from the main thread (measured):

* ``num_workers > 0``: the worker's exception is re-raised in the loader's reader thread as
  ``ExcType("DataLoader worker(i) caught ExcType with message:\\n<traceback>")``; that thread
  dies, and the main thread gets ``SystemError: (Fatal) Blocking queue is killed because the
  data reader raises an exception``.
* ``num_workers == 0``: the exception kills the reader thread without closing the queue, and
  the main thread waits forever.

:func:`install_dataloader_hook` (called by ``zoo.utils.cli.main_wrapper``) installs a
``threading.excepthook`` that remembers an exception raised in a DataLoader thread and kills
that loader's queue (so the main thread fails instead of hanging); ``main_wrapper`` then
reports the remembered error (its original one-line message) instead of the SystemError.

Workers: Paddle's worker checks its parent only between batches, and a worker whose output
queue is full never gets there, so a SIGKILLed trainer left its workers running (measured).
:func:`worker_init_fn` asks the kernel to kill the worker when its parent dies
(``PR_SET_PDEATHSIG``, Linux); pass it to every ``paddle.io.DataLoader``.
"""
import ctypes
import os
import re
import signal
import threading
import weakref

from .errors import ZooError

_thread_errors = []
_failed_loaders = []  # weak references to the DataLoader iterators whose thread raised
_previous_hook = None
_WORKER_PREFIX = re.compile(r'^DataLoader worker\(\d+\) caught (\w+) with message:')


def _loader_iterator_of(tb):
    """The paddle DataLoader iterator whose ``_thread_loop`` raised (walks the traceback)."""
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == '_thread_loop' and 'paddle' in frame.f_code.co_filename:
            return frame.f_locals.get('self')
        tb = tb.tb_next
    return None


def _excepthook(args):
    previous = _previous_hook or threading.__excepthook__
    it = _loader_iterator_of(args.exc_traceback) if args.exc_type is not None else None
    if it is None:
        return previous(args)
    _thread_errors.append(args.exc_value)
    try:
        _failed_loaders.append(weakref.ref(it))
    except TypeError:
        pass
    try:  # wake the main thread (single-process loaders never do it themselves)
        it._exit_thread_unexpectedly()
    except Exception:  # noqa: BLE001  (best effort; the error is already recorded)
        pass
    if not isinstance(args.exc_value, ZooError):
        previous(args)  # a bug, not a user error: keep the traceback


def install_dataloader_hook():
    global _previous_hook
    if threading.excepthook is not _excepthook:
        _previous_hook = threading.excepthook
        threading.excepthook = _excepthook


def one_line_message(exc):
    """The user-facing line of an exception, unwrapping Paddle's DataLoader worker wrapper."""
    msg = str(exc)
    m = _WORKER_PREFIX.match(msg)
    if m:
        # the original exception is the traceback's last line: "pkg.mod.ExcType: message"
        for line in reversed(msg.strip().splitlines()):
            name, sep, rest = line.partition(': ')
            if sep and name.split('.')[-1] == m.group(1):
                return rest.strip()
    lines = [ln for ln in msg.strip().splitlines() if ln.strip()]
    return lines[0].strip() if lines else type(exc).__name__


def shutdown_failed_loaders():
    """Stop the workers of loaders that failed (from the main thread; their own thread cannot
    join itself). Left running, they make the interpreter hang at exit."""
    while _failed_loaders:
        it = _failed_loaders.pop()()
        if it is None:
            continue
        try:
            it._try_shutdown_all()
        except Exception:  # noqa: BLE001  (best effort on the way out)
            pass


def recorded_loader_error():
    """The last exception a DataLoader thread raised (None if none)."""
    return _thread_errors[-1] if _thread_errors else None


def clear_recorded_errors():
    _thread_errors.clear()


_PR_SET_PDEATHSIG = 1


def worker_init_fn(worker_id):
    """DataLoader ``worker_init_fn``: die with the parent (``PR_SET_PDEATHSIG``)."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: Paddle's own parent check still applies
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def shutdown_loader(iterator):
    """End a DataLoader iterator's workers now (not whenever the garbage collector gets to it:
    a traceback keeps the iterator alive until the process exits)."""
    shutdown = getattr(iterator, '_try_shutdown_all', None)
    if shutdown is not None:
        try:
            shutdown()
        except Exception:  # noqa: BLE001  (best effort on the way out)
            pass
