"""What every command-line tool shares: one-line errors and the common flags.

``main_wrapper(main)`` runs a tool's ``main()`` and turns user errors into ``error: <one line>`` on
stderr with exit code 2 (130 for Ctrl-C) instead of a traceback.

Paddle 3.2.2's DataLoader hides a dataset's exception from the main thread (measured):

* ``num_workers > 0``: the worker's exception is re-raised in the loader's reader thread as
  ``ExcType("DataLoader worker(i) caught ExcType with message:\\n<traceback>")``; that thread
  dies, and the main thread gets ``SystemError: (Fatal) Blocking queue is killed because the
  data reader raises an exception``.
* ``num_workers == 0``: the exception kills the reader thread without closing the queue, and
  the main thread waits forever.

:func:`install_dataloader_hook` (called by ``main_wrapper``) installs a ``threading.excepthook``
that remembers an exception raised in a DataLoader thread and kills that loader's queue (so
the main thread fails instead of hanging); ``main_wrapper`` then reports the remembered error
(its original one-line message) instead of the SystemError.
"""
import argparse
import re
import sys
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


def _user_error(exc):
    """Return the one-line message if ``exc`` is a user error, else None."""
    if isinstance(exc, ZooError):
        return one_line_message(exc)
    if isinstance(exc, FileNotFoundError):
        if exc.filename is None:  # e.g. re-raised by a DataLoader worker with only a message
            return one_line_message(exc)
        return f'{exc.strerror or "No such file or directory"}: {exc.filename}'
    return None


def main_wrapper(fn):
    """Run ``fn()``; exit 2 with ``error: <one line>`` for user errors, 130 on Ctrl-C."""
    install_dataloader_hook()
    _thread_errors.clear()
    try:
        fn()
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001
        shutdown_failed_loaders()
        msg = _user_error(e)
        loader_err = recorded_loader_error()
        if msg is None and loader_err is not None and (isinstance(e, SystemError) or 'Blocking queue' in str(e)):
            msg = _user_error(loader_err)  # the loader's SystemError stands for the dataset's error
        if msg is None:
            raise
        print(f'error: {msg}', file=sys.stderr)
        sys.exit(2)


def add_common_args(parser, model_path_required=False):
    """``--config --opts --model_path --device --num_workers``, as every PaddleSeg tool has them."""
    parser.add_argument('--config', required=True, help='YAML config file')
    parser.add_argument('--opts', nargs='+', default=[], help='config overrides: key.subkey=value ...')
    parser.add_argument('--model_path', required=model_path_required, default=None,
                        help='trained weights (model.pdparams)')
    parser.add_argument('--device', choices=['cpu', 'gpu'], default=None,
                        help='default: gpu if Paddle was built with CUDA')
    parser.add_argument('--num_workers', type=int, default=0, help='DataLoader worker processes')
    return parser


def add_test_config_args(parser, aug_flag='--aug_eval'):
    """Flags overriding the config's ``test_config`` (PaddleSeg names; sizes are ``w h``)."""
    parser.add_argument(aug_flag, dest='aug', action='store_true', default=None,
                        help='multi-scale and/or flip test-time augmentation')
    parser.add_argument('--scales', nargs='+', type=float, default=None, help='scales for augmentation')
    parser.add_argument('--flip_horizontal', action='store_true', default=None, help='add a horizontal-flip pass')
    parser.add_argument('--flip_vertical', action='store_true', default=None, help='add a vertical-flip pass')
    parser.add_argument('--is_slide', action='store_true', default=None, help='sliding-window inference')
    parser.add_argument('--crop_size', nargs=2, type=int, default=None, metavar=('W', 'H'),
                        help='sliding window size (w h)')
    parser.add_argument('--stride', nargs=2, type=int, default=None, metavar=('W', 'H'),
                        help='sliding window stride (w h)')
    return parser


def add_verbose_arg(parser):
    """``--verbose``: show the third-party warnings held back by default (zoo/utils/quiet.py)."""
    parser.add_argument('--verbose', action='store_true',
                        help="show third-party warnings and Paddle's start-up messages that are held back by default")
    return parser


def test_config_overrides(args):
    """The test_config keys set on the command line (flags left unset are omitted)."""
    out = {}
    for key, dest in (('aug_eval', 'aug'), ('scales', 'scales'), ('flip_horizontal', 'flip_horizontal'),
                      ('flip_vertical', 'flip_vertical'), ('is_slide', 'is_slide'), ('crop_size', 'crop_size'),
                      ('stride', 'stride')):
        v = getattr(args, dest, None)
        if v is not None:
            out[key] = v
    return out


def set_device(device=None):
    """``paddle.set_device`` for ``--device``; gpu when asked but unavailable is a user error."""
    import paddle
    if device is None:
        device = 'gpu' if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0 else 'cpu'
    if device == 'gpu' and not paddle.device.is_compiled_with_cuda():
        raise ZooError('--device gpu: this Paddle build has no CUDA support (install a GPU build or use --device cpu)')
    paddle.set_device(device)
    return device


def build_parser(description):
    return argparse.ArgumentParser(description=description)
