"""One run per ``--save_dir``: a lock file holding the owner's host, pid and start time.

``save_dir/.lock`` is created with ``O_CREAT | O_EXCL`` (atomic, also on NFS v3+). A second run
finds it and stops with one line naming the owner. A lock left by a run that died (same host,
pid gone or reused by another process) is taken over with a warning; a lock from another host
cannot be checked from here, so it is reported with the file to delete if that run is over.

Taking over a stale lock happens under ``fcntl.flock`` on the lock file itself (held only for
the check-and-rewrite; the kernel releases it if the process dies), and the file is rewritten in
place, never removed, so two runs that find the same stale lock cannot both take it.
"""
import contextlib
import fcntl
import json
import os
import socket
import time

from .errors import ZooError
from .logger import logger

LOCK_NAME = '.lock'


class SaveDirLocked(ZooError):
    """Another run is using the save_dir."""


def _process_start(pid):
    """The start time of ``pid`` in clock ticks since boot (Linux), or None: tells a live run
    from an unrelated process that got the same pid later."""
    try:
        with open(f'/proc/{pid}/stat', 'rb') as f:
            return int(f.read().rsplit(b')', 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(info):
    pid = info.get('pid')
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    started = info.get('start')
    return started is None or _process_start(pid) in (None, started)


def _owner():
    pid = os.getpid()
    return {'host': socket.gethostname(), 'pid': pid, 'start': _process_start(pid),
            'since': time.strftime('%Y-%m-%d %H:%M:%S')}


def _read(path):
    try:
        with open(path, encoding='utf-8') as f:
            info = json.load(f)
        return info if isinstance(info, dict) else {}
    except (OSError, ValueError):
        return {}


class SaveDirLock:
    """``with SaveDirLock(save_dir):`` or ``acquire()`` / ``release()``."""

    def __init__(self, save_dir):
        self.save_dir = save_dir
        self.path = os.path.join(save_dir, LOCK_NAME)
        self.held = False

    def _create(self):
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            json.dump(_owner(), f)

    def acquire(self):
        if os.path.exists(self.save_dir) and not os.path.isdir(self.save_dir):
            raise ZooError(f'--save_dir {self.save_dir} is a file, not a folder')
        os.makedirs(self.save_dir, exist_ok=True)
        try:
            self._create()
        except FileExistsError:
            self._take_over_or_refuse()
        self.held = True
        return self

    def _take_over_or_refuse(self):
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR)
            except FileNotFoundError:  # released meanwhile
                try:
                    self._create()
                    return
                except FileExistsError:
                    continue
            with os.fdopen(fd, 'r+', encoding='utf-8') as f:
                fcntl.flock(f, fcntl.LOCK_EX)  # one taker at a time; released if we die
                try:
                    if os.fstat(f.fileno()).st_ino != os.stat(self.path).st_ino:
                        continue  # released and re-created while we waited: look again
                except FileNotFoundError:
                    continue
                try:
                    info = json.loads(f.read() or '{}')
                except ValueError:
                    info = {}
                self._refuse_unless_stale(info if isinstance(info, dict) else {})
                f.seek(0)
                f.truncate()
                json.dump(_owner(), f)
                f.flush()
                return

    def _refuse_unless_stale(self, info):
        who = f'pid {info.get("pid")} on {info.get("host")}, since {info.get("since")}'
        same_host = info.get('host') == socket.gethostname()
        if not info and time.time() - os.path.getmtime(self.path) < 10:
            # an empty lock file this young is being written by a run that is starting now
            raise SaveDirLocked(f'--save_dir {self.save_dir} is in use by a run that is starting; '
                                'use another --save_dir')
        if same_host and _alive(info):
            raise SaveDirLocked(f'--save_dir {self.save_dir} is in use by another run ({who}); '
                                'use another --save_dir or wait for it to finish')
        if info and not same_host:
            raise SaveDirLocked(f'--save_dir {self.save_dir} is locked by a run on another machine '
                                f'({who}); if that run is over, delete {self.path}')
        logger.warning(f'--save_dir {self.save_dir}: taking over the lock of a run that is gone '
                       f'({who if info else "unreadable lock file"})')

    def release(self):
        if self.held:
            self.held = False
            with contextlib.suppress(OSError):
                if _read(self.path).get('pid') == os.getpid():
                    os.remove(self.path)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
