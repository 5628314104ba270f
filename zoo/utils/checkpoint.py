"""Reading and writing weights and checkpoints.

Writes are atomic: a file is written next to its destination under a temporary name and
moved into place with ``os.replace`` (atomic on POSIX), so an interrupted save never leaves a
half-written file where a loader would find it.
"""
import hashlib
import os
import re
import shutil
import sys
import tempfile
import urllib.parse
import urllib.request

import numpy as np
import paddle

from .errors import CheckpointError
from .logger import logger

CACHE_DIR = os.path.expanduser(os.environ.get('ZOO_HOME', '~/.cache/paddle_seg_zoo'))


def atomic_save(obj, path):
    """``paddle.save`` into ``path`` atomically (temp file in the same folder + rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=folder)
    os.close(fd)
    try:
        paddle.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path, text):
    """Write a text file atomically (temp file in the same folder + rename), UTF-8."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a report is for everyone who can read the folder
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_replace_dir(src_dir, dst_dir):
    """Move a fully written folder into place, replacing ``dst_dir`` if it exists."""
    old = None
    if os.path.exists(dst_dir):
        old = dst_dir.rstrip('/') + '.old'
        if os.path.exists(old):
            shutil.rmtree(old)
        os.rename(dst_dir, old)
    os.rename(src_dir, dst_dir)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def load_file(path, what='checkpoint'):
    """``paddle.load`` with one-line errors for missing and corrupt files."""
    if not os.path.isfile(path):
        raise CheckpointError(f'{what} file {path!r} does not exist')
    try:
        return paddle.load(path)
    except Exception as e:  # paddle raises many kinds for a truncated/corrupt pickle
        raise CheckpointError(f'{what} file {path!r} is corrupt or not a Paddle file ({type(e).__name__}: {e})') from None


def download(url, cache_dir=CACHE_DIR):
    """Download ``url`` into the cache (once) with a progress bar; return the local path."""
    name = os.path.basename(urllib.parse.urlparse(url).path) or 'weights'
    digest = hashlib.sha1(url.encode()).hexdigest()[:8]
    dst = os.path.join(cache_dir, f'{digest}_{name}')
    if os.path.isfile(dst):
        return dst
    os.makedirs(cache_dir, exist_ok=True)
    tmp = dst + '.part'
    logger.info(f'downloading {url} -> {dst}')
    try:
        from tqdm import tqdm
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, 'wb') as f:
            total = int(r.headers.get('Content-Length') or 0)
            with tqdm(total=total or None, unit='B', unit_scale=True, file=sys.stderr) as bar:
                while True:
                    chunk = r.read(1 << 20)
                    if not chunk:
                        break
                    f.write(chunk)
                    bar.update(len(chunk))
        os.replace(tmp, dst)
    except Exception as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise CheckpointError(f'cannot download {url}: {e}') from None
    return dst


def resolve_path(path_or_url):
    if str(path_or_url).startswith(('http://', 'https://')):
        return download(path_or_url)
    return path_or_url


def weights_from_archive(path):
    """PaddleSeg ships ImageNet weights as ``name.tar.gz`` holding ``name/model.pdparams``:
    extract once next to the archive and return the ``.pdparams`` inside."""
    import tarfile
    folder = re.sub(r'(\.tar\.gz|\.tgz|\.tar)$', '', str(path)) + '.extracted'
    if not os.path.isdir(folder):
        tmp = folder + '.part'
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            with tarfile.open(path) as tar:
                tar.extractall(tmp, filter='data')
        except (tarfile.TarError, OSError) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CheckpointError(f'weights archive {path!r} cannot be extracted ({e})') from None
        os.replace(tmp, folder)
    found = sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files
                   if f.endswith(('.pdparams', '.pth', '.pt')))
    if not found:
        raise CheckpointError(f'weights archive {path!r} holds no .pdparams/.pth file')
    return found[0]


def read_state_dict(path_or_url, what='weights'):
    """Read a state dict from a Paddle file (or, for ``.pth``/``.pt``, a PyTorch file).

    PyTorch files are read with torch when it is installed (``pip install -e .[convert]``)
    and unwrapped from ``{'state_dict': ...}`` / ``{'model': ...}``; values become numpy.
    """
    path = resolve_path(path_or_url)
    if str(path).endswith(('.tar.gz', '.tgz', '.tar')):
        path = weights_from_archive(path)
    if str(path).endswith(('.pth', '.pt', '.bin')) or _is_zip(path):
        from .torch_io import load_torch_state_dict
        return load_torch_state_dict(path)
    sd = load_file(path, what)
    if isinstance(sd, dict) and 'model' in sd and isinstance(sd['model'], dict) and len(sd) <= 4:
        sd = sd['model']
    if not isinstance(sd, dict):
        raise CheckpointError(f'{what} file {path!r} does not hold a state dict (got {type(sd).__name__})')
    return sd


def _is_zip(path):
    """torch.save writes a zip archive (Paddle writes a pickle); release files may lack a suffix."""
    try:
        with open(path, 'rb') as f:
            return f.read(4) == b'PK\x03\x04'
    except OSError:
        return False


def _shape(v):
    return tuple(v.shape) if hasattr(v, 'shape') else np.asarray(v).shape


def load_state_dict_checked(layer, state_dict, source='weights', strict=True, prefix_hint=''):
    """Load into ``layer``; report missing/unexpected/mismatched keys by name.

    With ``strict`` any problem raises CheckpointError; otherwise it is logged as a warning
    (the usual behavior for ImageNet-pretrained backbones, whose classifier is dropped).
    Returns (missing, unexpected).
    """
    own = layer.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f'{k} {list(_shape(state_dict[k]))} vs {list(_shape(own[k]))}'
                  for k in own if k in state_dict and tuple(_shape(state_dict[k])) != tuple(_shape(own[k]))]
    if mismatched:
        raise CheckpointError(f'{source}: shape mismatch for {len(mismatched)} parameter(s): '
                              + '; '.join(mismatched[:5]))
    problems = []
    if missing:
        problems.append(f'missing {len(missing)}: {", ".join(missing[:8])}' + (' ...' if len(missing) > 8 else ''))
    if unexpected:
        problems.append(f'unexpected {len(unexpected)}: {", ".join(unexpected[:8])}'
                        + (' ...' if len(unexpected) > 8 else ''))
    if problems and strict:
        raise CheckpointError(f'{source}: keys do not match the model ({"; ".join(problems)})')
    if problems:
        logger.warning(f'{source}: ' + '; '.join(problems))
    layer.set_state_dict({k: v for k, v in state_dict.items() if k in own})
    return missing, unexpected


def load_pretrained(layer, path_or_url, converter=None, strict=False):
    """Load pretrained weights into ``layer`` (a model or a backbone).

    ``converter(state_dict) -> state_dict`` renames a foreign checkpoint (e.g. an mmseg
    PyTorch file) into this layer's names; it lives next to the model it serves.
    """
    sd = read_state_dict(path_or_url, 'pretrained weights')
    if converter is not None:
        sd = converter(sd)
    missing, unexpected = load_state_dict_checked(layer, sd, f'pretrained {path_or_url}', strict=strict)
    logger.info(f'loaded pretrained weights {path_or_url} ({len(sd) - len(unexpected)} tensors)')
    return missing, unexpected
