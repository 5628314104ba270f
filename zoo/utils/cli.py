"""What every command-line tool shares: one-line errors, clean signals and the common flags.

``main_wrapper(main)`` runs a tool's ``main()``:

* a user error (:class:`ZooError`, a missing file, a full disk, a permission problem) prints
  ``error: <one line>`` on stderr and exits 2; ``ZOO_DEBUG=1`` prints the traceback too.
  Anything else is a bug and keeps its traceback.
* Ctrl-C prints ``error: interrupted`` and exits 130; SIGTERM (``kill``, a cluster scheduler,
  ``paddle.distributed.launch`` stopping its workers) prints ``error: terminated`` and exits 143.
  Both unwind normally, so DataLoader workers are ended and half-written files removed.
  (Paddle installs a C++ handler that prints a crash report for SIGTERM; ``main_wrapper``
  replaces it once paddle is imported.)
* A dataset error raised inside a DataLoader thread is reported as itself
  (``loader_guard.py``), not as Paddle's "Blocking queue is killed".
"""
import argparse
import errno
import os
import signal
import sys
import traceback

from .errors import ZooError
from .loader_guard import (clear_recorded_errors, install_dataloader_hook, one_line_message,
                           recorded_loader_error, shutdown_failed_loaders)

# OS errors a user causes (a path, a full disk, permissions): one line, not a traceback
USER_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EACCES, errno.EPERM,
               errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.EFBIG}


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (a KeyboardInterrupt, so every cleanup path for Ctrl-C runs)."""


def _raise_terminated(signum, frame):
    raise Terminated('terminated')


def install_signal_handlers():
    """SIGTERM -> :class:`Terminated` in the main thread; returns the previous handler. Imports
    paddle first: its import installs a C++ SIGTERM handler that would replace ours."""
    import paddle  # noqa: F401
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _user_error(exc):
    """Return the one-line message if ``exc`` is a user error, else None."""
    if isinstance(exc, ZooError):
        return one_line_message(exc)
    if isinstance(exc, OSError) and exc.errno in USER_ERRNOS:
        if exc.filename is None:  # e.g. re-raised by a DataLoader worker with only a message
            return one_line_message(exc)
        return f'{exc.strerror or os.strerror(exc.errno)}: {exc.filename}'
    if isinstance(exc, FileNotFoundError):
        return one_line_message(exc)
    return None


def main_wrapper(fn):
    """Run ``fn()``; exit 2 with ``error: <one line>`` for user errors, 130 on Ctrl-C, 143 on SIGTERM."""
    install_dataloader_hook()
    clear_recorded_errors()
    previous = install_signal_handlers()
    debug = os.environ.get('ZOO_DEBUG', '') not in ('', '0')
    try:
        _run(fn, debug)
    finally:
        signal.signal(signal.SIGTERM, previous)  # matters when called in-process (tests, notebooks)


def _run(fn, debug):
    try:
        fn()
    except Terminated:
        shutdown_failed_loaders()
        print('error: terminated (SIGTERM)', file=sys.stderr)
        sys.exit(143)
    except KeyboardInterrupt:
        shutdown_failed_loaders()
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
        if debug:
            traceback.print_exc()
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


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (``error: <what> (<prog> --help)``, exit 2) instead of the
    usage block followed by the error, as every other user error here."""

    def error(self, message):
        self.exit(2, f'error: {message} (see {self.prog} --help)\n')


def build_parser(description):
    return ArgumentParser(description=description)
