"""The library's logger: ``[2026-11-20 12:00:00] INFO: message``; only rank 0 prints INFO.

:func:`log_to_file` copies every line the console gets into a file too (``save_dir/train.log``):
the same formatter, no progress bars (those are written to the terminal by tqdm, not logged).
"""
import logging
import os
import sys

FORMAT = logging.Formatter('[%(asctime)s] %(levelname)s: %(message)s', '%Y-%m-%d %H:%M:%S')

logger = logging.getLogger('zoo')
if not logger.handlers:
    _h = logging.StreamHandler(sys.stdout)
    _h.setFormatter(FORMAT)
    logger.addHandler(_h)
    rank = int(os.environ.get('PADDLE_TRAINER_ID', '0'))
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False


def log_to_file(path, mode='a'):
    """Also write the logger's lines to ``path`` (appended: a resumed run continues its log).
    Returns the handler; pass it to :func:`stop_log_to_file` when done."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    handler = logging.FileHandler(path, mode=mode, encoding='utf-8')
    handler.setFormatter(FORMAT)
    logger.addHandler(handler)
    return handler


def stop_log_to_file(handler):
    if handler is not None:
        logger.removeHandler(handler)
        handler.close()
