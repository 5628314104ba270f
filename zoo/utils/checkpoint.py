"""The one door for weights and checkpoints: every load of a ``.pdparams`` / ``.pdopt`` /
``.pdstates`` file (ours, PaddleSeg's, a download) goes through :func:`load_file`.

* :func:`load_file` never runs code from the file: it unpickles with an allow-list
  (``safe_pickle.py``, the counterpart of ``torch.load(weights_only=True)``) and refuses
  anything else with one line naming the file. PyTorch files go through torch's own
  ``weights_only=True`` loader (``torch_io.py``).
* :func:`read_state_dict` accepts a path or a URL (downloaded and verified by
  ``download.py``: https only, length and sha256 checked before the file is cached).
* :func:`require_finite` refuses weights holding NaN/inf (a diverged run's state): loading
  into a model (:func:`load_state_dict_checked`) always checks.
* Writes are atomic (``atomic.py``): a reader never finds a half-written file.
"""
import os
import re

import numpy as np

from .atomic import atomic_dir
from .download import resolve_path
from .errors import CheckpointError
from .logger import logger
from .safe_pickle import UnsafeCheckpoint, to_paddle_result, unpickle


def load_file(path, what='checkpoint', return_numpy=False):
    """Read a Paddle checkpoint file safely (see the module docstring); one-line errors.

    Returns what ``paddle.load`` would (Tensors, or numpy arrays with ``return_numpy``).
    """
    path = str(path)
    if not os.path.isfile(path):
        raise CheckpointError(f'{what} file {path!r} does not exist'
                              + (' (it is a folder)' if os.path.isdir(path) else ''))
    try:
        empty = os.path.getsize(path) == 0
        with open(path, 'rb') as f:
            obj = unpickle(f)  # straight from the file: no second copy of a large checkpoint
    except UnsafeCheckpoint as e:
        raise CheckpointError(f'{what} file {path!r} refused: it {e}, which no Paddle checkpoint does '
                              '(loading it could run code)') from None
    except OSError as e:
        raise CheckpointError(f'{what} file {path!r} cannot be read: {e.strerror or e}') from None
    except Exception as e:  # noqa: BLE001  (a truncated/corrupt pickle raises many kinds)
        kind = 'empty' if empty else 'corrupt or not a Paddle checkpoint'
        raise CheckpointError(f'{what} file {path!r} is {kind} ({type(e).__name__}: {e})'.rstrip()) from None
    return to_paddle_result(obj, return_numpy=return_numpy)


def _float_values(obj, key=()):
    """``(dotted key, array or tensor)`` for every floating-point tensor in a nested state."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _float_values(v, key + (str(k),))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _float_values(v, key + (str(i),))
    elif isinstance(obj, (np.ndarray, np.generic)):
        if np.issubdtype(obj.dtype, np.inexact):
            yield '.'.join(key), obj
    elif hasattr(obj, 'is_floating_point') and obj.is_floating_point():  # a paddle.Tensor
        yield '.'.join(key), obj


def nonfinite_keys(state):
    """The keys (dotted for nested dicts) of floating-point tensors holding NaN or inf."""
    import paddle
    bad = []
    for key, v in _float_values(state):
        if isinstance(v, (np.ndarray, np.generic)):
            finite = bool(np.isfinite(v).all())
        else:
            finite = bool(paddle.isfinite(v).all())
        if not finite:
            bad.append(key)
    return bad


def count_tensors(state):
    return sum(1 for _ in _float_values(state))


def require_finite(state, source):
    """Raise CheckpointError if any floating-point tensor of ``state`` holds NaN or inf."""
    bad = nonfinite_keys(state)
    if bad:
        raise CheckpointError(f'{source}: {len(bad)} of {count_tensors(state)} tensors hold NaN/inf '
                              f'(e.g. {", ".join(bad[:3])}); refusing non-finite weights '
                              '(the run that wrote them diverged)')


def weights_from_archive(path):
    """PaddleSeg ships ImageNet weights as ``name.tar.gz`` holding ``name/model.pdparams``:
    extract once next to the archive and return the ``.pdparams`` inside."""
    import tarfile
    folder = re.sub(r'(\.tar\.gz|\.tgz|\.tar)$', '', str(path)) + '.extracted'
    if not os.path.isdir(folder):
        try:
            with atomic_dir(folder, 'extracted weights') as tmp, tarfile.open(path) as tar:
                tar.extractall(tmp, filter='data')  # 'data': no absolute paths, links out or devices
        except tarfile.TarError as e:
            raise CheckpointError(f'weights archive {path!r} cannot be extracted ({e})') from None
    found = sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files
                   if f.endswith(('.pdparams', '.pth', '.pt')))
    if not found:
        raise CheckpointError(f'weights archive {path!r} holds no .pdparams/.pth file')
    return found[0]


def read_state_dict(path_or_url, what='weights', sha256=None):
    """Read a state dict from a Paddle file (or, for ``.pth``/``.pt``, a PyTorch file), a
    ``.tar.gz`` holding one, or a URL of either (``sha256``: the expected hash, see download.py).

    PyTorch files are read with torch when it is installed (``pip install -e .[convert]``)
    and unwrapped from ``{'state_dict': ...}`` / ``{'model': ...}``; values become numpy.
    """
    path = resolve_path(path_or_url, sha256=sha256)
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


def check_keys(state_dict, own, source='weights', strict=True, show=8):
    """Compare a state dict with a model's (``own``): a shape mismatch always raises; missing or
    unexpected keys raise with ``strict``, else are logged. Returns (missing, unexpected)."""
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f'{k} {list(_shape(state_dict[k]))} vs {list(_shape(own[k]))}'
                  for k in own if k in state_dict and tuple(_shape(state_dict[k])) != tuple(_shape(own[k]))]
    if mismatched:
        raise CheckpointError(f'{source}: shape mismatch for {len(mismatched)} parameter(s): '
                              + '; '.join(mismatched[:5]))
    problems = [f'{word} {len(keys)}: {", ".join(keys[:show])}' + (' ...' if len(keys) > show else '')
                for word, keys in (('missing', missing), ('unexpected', unexpected)) if keys]
    if problems and strict:
        raise CheckpointError(f'{source}: keys do not match the model ({"; ".join(problems)})')
    if problems:
        logger.warning(f'{source}: ' + '; '.join(problems))
    return missing, unexpected


def load_state_dict_checked(layer, state_dict, source='weights', strict=True):
    """Load into ``layer``; report missing/unexpected/mismatched keys by name.

    With ``strict`` any problem raises CheckpointError; otherwise it is logged as a warning
    (the usual behavior for ImageNet-pretrained backbones, whose classifier is dropped).
    Weights holding NaN/inf are refused either way. Returns (missing, unexpected).
    """
    own = layer.state_dict()
    require_finite({k: v for k, v in state_dict.items() if k in own}, source)
    missing, unexpected = check_keys(state_dict, own, source, strict)
    layer.set_state_dict({k: v for k, v in state_dict.items() if k in own})
    return missing, unexpected

