"""The one way to write files and folders so that a reader never sees them half-written.

* :func:`atomic_dir` is a context manager: write everything into the temporary folder it
  yields; when the block ends without an exception the folder is renamed into place
  (replacing an existing one), otherwise it is removed and the old folder is untouched.
* :func:`atomic_file` does the same for one file (:func:`atomic_save` for ``paddle.save``,
  :func:`atomic_write_text` for text).
* :func:`remove_dir` deletes a folder atomically from a reader's point of view: it is first
  renamed to a hidden trash name (one ``rename``), then deleted; a kill in the middle leaves
  either the intact folder or a hidden trash folder, never a half-deleted one under its name.

Temporary and trash names start with ``.`` and end with ``.tmp`` / ``.trash``;
:func:`clean_leftovers` removes those a killed process left behind.

A failed write (disk full, read-only folder, quota) raises :class:`WriteError` naming the
destination; the previous version stays in place.
"""
import contextlib
import os
import shutil
import tempfile

from .errors import ZooError

TMP_SUFFIX = '.tmp'
TRASH_SUFFIX = '.trash'


class WriteError(ZooError):
    """A file or folder could not be written (disk full, permissions, ...)."""


def _write_error(what, path, err, kept=None):
    reason = err.strerror or str(err) if isinstance(err, OSError) else str(err)
    tail = f'; {kept} is intact' if kept else ''
    return WriteError(f'cannot write {what} {path}: {reason}{tail}')


def _current_umask():
    umask = os.umask(0)  # the only way to read it is to set it
    os.umask(umask)
    return umask


def _apply_umask(path, mode=0o666):
    """``mkstemp``/``mkdtemp`` create with mode 0600/0700; give the mode ``open``/``mkdir`` would."""
    os.chmod(path, mode & ~_current_umask())


def _hidden_sibling(path, suffix):
    parent = os.path.dirname(os.path.abspath(path))
    return parent, '.' + os.path.basename(os.path.normpath(path)) + '.', suffix


def replace_dir(src_dir, dst_dir):
    """Rename a fully written folder to ``dst_dir``; an existing ``dst_dir`` goes to the trash
    first and is deleted afterwards (a reader sees the old folder, then the new one)."""
    old = None
    if os.path.lexists(dst_dir):
        parent, prefix, suffix = _hidden_sibling(dst_dir, TRASH_SUFFIX)
        old = tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent)
        os.rename(dst_dir, os.path.join(old, 'old'))
    os.rename(src_dir, dst_dir)
    if old:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(final, what='folder', kept=None):
    """``with atomic_dir('out/iter_3') as tmp:`` write into ``tmp``; renamed to ``final`` on success.

    ``what`` names the thing in error messages; ``kept`` names what a failed write leaves
    intact (e.g. the previous checkpoint). OS errors become :class:`WriteError`.
    """
    if os.path.lexists(final) and not os.path.isdir(final):
        raise WriteError(f'cannot write {what} {final}: it is a file, not a folder (give a folder name; '
                         'the file is left as it is)')
    parent, prefix, suffix = _hidden_sibling(final, TMP_SUFFIX)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent)
        _apply_umask(tmp, 0o777)
    except OSError as e:
        raise _write_error(what, final, e, kept) from None
    try:
        yield tmp
        replace_dir(tmp, final)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _write_error(what, final, e, kept) from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_file(path, what='file'):
    """``with atomic_file('w.pdparams') as tmp:`` write the file ``tmp``; renamed to ``path`` on
    success with the mode a plain ``open`` would give (``mkstemp`` makes 0600)."""
    if os.path.isdir(path):
        raise WriteError(f'cannot write {what} {path}: it is a folder (give a file name, e.g. '
                         f'{os.path.join(path, "model.pdparams")})')
    parent, prefix, suffix = _hidden_sibling(path, TMP_SUFFIX)
    tmp = None
    try:
        os.makedirs(parent, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=parent)
        os.close(fd)
        yield tmp
        _apply_umask(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise _write_error(what, path, e) from None
    finally:
        if tmp and os.path.exists(tmp):
            os.remove(tmp)


def atomic_save(obj, path, what='file'):
    """``paddle.save`` into ``path`` atomically."""
    import paddle
    with atomic_file(path, what) as tmp:
        paddle.save(obj, tmp)


def atomic_write_text(path, text, what='file'):
    """Write a UTF-8 text file atomically."""
    with atomic_file(path, what) as tmp, open(tmp, 'w', encoding='utf-8') as f:
        f.write(text)


def remove_dir(path):
    """Delete a folder: rename it to a hidden trash name (atomic), then delete that."""
    if not os.path.isdir(path):
        return
    parent, prefix, suffix = _hidden_sibling(path, TRASH_SUFFIX)
    trash = tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent)
    os.rename(path, os.path.join(trash, 'old'))
    shutil.rmtree(trash, ignore_errors=True)


def clean_leftovers(folder):
    """Remove hidden temporary / trash folders and files a killed process left in ``folder``."""
    if not os.path.isdir(folder):
        return []
    removed = []
    for name in os.listdir(folder):
        if name.startswith('.') and name.endswith((TMP_SUFFIX, TRASH_SUFFIX)):
            p = os.path.join(folder, name)
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(p)
            removed.append(name)
    return removed
