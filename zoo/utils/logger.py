"""The library's logger: ``[2026-11-20 12:00:00] INFO: message``; only rank 0 prints INFO."""
import logging
import os
import sys

logger = logging.getLogger('zoo')
if not logger.handlers:
    _h = logging.StreamHandler(sys.stdout)
    _h.setFormatter(logging.Formatter('[%(asctime)s] %(levelname)s: %(message)s', '%Y-%m-%d %H:%M:%S'))
    logger.addHandler(_h)
    rank = int(os.environ.get('PADDLE_TRAINER_ID', '0'))
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False
