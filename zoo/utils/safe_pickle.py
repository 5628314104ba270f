"""Read Paddle checkpoints (``.pdparams`` / ``.pdopt`` / ``.pdstates``) without running code.

``paddle.load`` is ``pickle.load``: a crafted file runs any function it names (``os.system``).
:func:`load` unpickles with an allow-list instead, the counterpart of PyTorch's
``torch.load(weights_only=True)``, then gives the result the shape ``paddle.load`` gives it.

What Paddle checkpoints contain (measured with Paddle 3.2.2 / numpy 2, and the formats older
PaddleSeg releases wrote; see tests/test_checkpoint.py, which writes each of them):

* ``paddle.save(layer.state_dict())`` / ``optimizer.state_dict()`` (protocol 4, the default):
  a dict of numpy arrays plus ``"StructuredToParameterName@@"`` (structured name -> Paddle
  name), and plain numbers / strings / dicts (``LR_Scheduler``). Globals:
  ``numpy._core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``.
* protocol 2 (``fluid.save_dygraph`` and PaddleSeg 2.0-era files; ``paddle.save(..., protocol=2)``):
  the same, with ``_codecs.encode`` for the raw array bytes and ``numpy.core.*`` names (numpy < 2),
  ``collections.OrderedDict`` for ordered state dicts; tensors over 1 GiB are split into slices
  listed under ``"UnpackBigParamInfor@@"``.
* nested objects holding Tensors (``{'model': state_dict, 'epoch': 3}``, a bare Tensor):
  each Tensor is a ``(name, ndarray)`` tuple built with ``builtins.tuple``; a ``DenseTensor``
  is an ndarray wrapped in ``builtins.eval('data', {'data': array})``.
* numpy scalars (``np.float32(0.5)``): ``numpy._core.multiarray.scalar``.

Everything else (any other module or name, object arrays) is refused with
:class:`UnsafeCheckpoint` naming the global; nothing the file names is ever called except the
guarded constructors below.
"""
import _compat_pickle
import codecs
import collections
import io
import pickle

import numpy as np

from .errors import CheckpointError

NAME_TABLE_KEY = 'StructuredToParameterName@@'
BIG_PARAM_KEY = 'UnpackBigParamInfor@@'  # sic: Paddle's spelling


class UnsafeCheckpoint(CheckpointError):
    """The file asks for something no Paddle checkpoint does (the message says what: "names os.system")."""


def _no_objects(dtype):
    if dtype.hasobject:
        raise UnsafeCheckpoint('holds an array of Python objects')
    return dtype


def _dtype(*args):
    return _no_objects(np.dtype(*args))


def _reconstruct(subtype, shape, typecode):
    if subtype is not np.ndarray:
        raise UnsafeCheckpoint(f'builds an array of type {subtype!r}')
    return np.ndarray.__new__(np.ndarray, shape, _dtype(typecode))


def _scalar(dtype, data):
    if not isinstance(dtype, np.dtype) or not isinstance(data, bytes):
        raise UnsafeCheckpoint('builds a numpy scalar from something other than bytes')
    _no_objects(dtype)
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _frombuffer(buf, dtype, shape, order):
    _no_objects(dtype)
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


def _latin1_encode(text, encoding='latin1'):
    """``_codecs.encode``: how protocol 2 stores ``bytes`` (numpy's raw array data)."""
    if not isinstance(text, str) or codecs.lookup(encoding).name not in ('latin-1', 'iso8859-1'):
        raise UnsafeCheckpoint('calls _codecs.encode for something other than latin-1 bytes')
    return codecs.encode(text, encoding)


def _dense_tensor(expr=None, scope=None, *rest):
    """``paddle.save`` pickles a DenseTensor as ``eval('data', {'data': array})``: accept exactly that."""
    if rest or expr != 'data' or not isinstance(scope, dict) or set(scope) != {'data'} \
            or not isinstance(scope['data'], np.ndarray):
        raise UnsafeCheckpoint('calls builtins.eval on something other than a tensor record')
    return scope['data']


_NUMPY = {'_reconstruct': _reconstruct, 'scalar': _scalar}
ALLOWED = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('builtins', 'tuple'): tuple,
    ('builtins', 'list'): list,
    ('builtins', 'dict'): dict,
    ('builtins', 'set'): set,
    ('builtins', 'frozenset'): frozenset,
    ('builtins', 'eval'): _dense_tensor,
    ('_codecs', 'encode'): _latin1_encode,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): _dtype,
}
for _mod in ('numpy.core.multiarray', 'numpy._core.multiarray'):
    ALLOWED.update({(_mod, k): v for k, v in _NUMPY.items()})
for _mod in ('numpy.core.numeric', 'numpy._core.numeric'):
    ALLOWED[(_mod, '_frombuffer')] = _frombuffer


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        # Python 2 pickles (protocol < 3) use Python 2 names: map them as pickle itself does
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UnsafeCheckpoint(f'names {module}.{name}') from None

    def persistent_load(self, pid):
        raise UnsafeCheckpoint('uses a persistent id')


def unpickle(data):
    """Restricted ``pickle.loads`` of ``data`` (bytes or a binary file object); raises
    UnsafeCheckpoint / UnpicklingError."""
    f = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    return _Unpickler(f, encoding='latin1').load()


# -- giving the result the shape paddle.load gives it ------------------------------------

def _join_big_params(obj):
    """Protocol 2/3 files split tensors over 1 GiB into slices; put them back together."""
    info = obj.pop(BIG_PARAM_KEY, None)
    if not isinstance(info, dict):
        return obj
    for key, value in info.items():
        parts = [obj.pop(p) for p in value['slices']]
        obj[key] = np.concatenate(parts).reshape(value['OriginShape'])
    return obj


def _is_named_array(x):
    return isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) and isinstance(x[1], np.ndarray)


def _contains(obj, pred):
    if pred(obj):
        return True
    if isinstance(obj, dict):
        return any(_contains(v, pred) for v in obj.values())
    if isinstance(obj, (list, tuple, set)):
        return any(_contains(v, pred) for v in obj)
    return False


def _map(obj, pred, fn):
    if pred(obj):
        return fn(obj)
    if isinstance(obj, dict):
        for k in list(obj):
            obj[k] = _map(obj[k], pred, fn)
        return obj
    if isinstance(obj, (list, tuple, set)):
        return type(obj)(_map(v, pred, fn) for v in obj)
    return obj


def to_paddle_result(obj, return_numpy=False):
    """What ``paddle.load`` returns for the unpickled ``obj`` (Paddle 3.2.2 semantics):
    arrays become ``paddle.Tensor`` (named after the saved parameter) unless ``return_numpy``."""
    import paddle

    def tensor(arr, name=None):
        if return_numpy:
            return arr
        t = paddle.to_tensor(arr)
        if name:
            t.name = name
        return t

    if isinstance(obj, dict):
        obj = _join_big_params(obj)
        if NAME_TABLE_KEY in obj:  # a state dict written by paddle.save
            names = obj.pop(NAME_TABLE_KEY)
            for k, v in obj.items():
                if isinstance(v, np.ndarray):
                    obj[k] = tensor(v, names.get(k) if isinstance(names, dict) else None)
            return obj
    # (name, array) tuples are Tensors saved inside nested objects; without any, every array is one
    if _contains(obj, _is_named_array):
        return _map(obj, _is_named_array, lambda x: tensor(x[1], x[0]))
    return _map(obj, lambda x: isinstance(x, np.ndarray), tensor)
