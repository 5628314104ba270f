"""zoo.utils.checkpoint and what it stands on: the allow-list unpickler (safe_pickle), verified
downloads (download), atomic writes (atomic) and the save_dir lock (lock)."""
import base64
import errno
import hashlib
import http.server
import json
import os
import pickle
import socket
import subprocess
import sys
import threading

import numpy as np
import paddle
import pytest

from zoo.utils import atomic, checkpoint, download, lock, safe_pickle
from zoo.utils.errors import CheckpointError

HERE = os.path.dirname(os.path.abspath(__file__))
FORMATS = os.path.join(HERE, 'manifests', 'paddle_checkpoint_formats.json')


# -- what Paddle checkpoints contain loads, and loads as paddle.load loads it ------------------

def _same(a, b, key=''):
    assert type(a) is type(b), (key, type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b), key
        for k in a:
            _same(a[k], b[k], f'{key}.{k}')
    elif isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f'{key}.{i}')
    elif isinstance(a, paddle.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, key
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=key)
        if not a.name.startswith('generated_tensor'):
            assert a.name == b.name, key
    else:
        assert a == b, (key, a, b)


def _paddle_objects():
    paddle.seed(0)
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4))
    sched = paddle.optimizer.lr.PolynomialDecay(0.1, 10)
    sgd = paddle.optimizer.Momentum(sched, parameters=model.parameters(), weight_decay=1e-4)
    adamw = paddle.optimizer.AdamW(0.01, parameters=model.parameters(), multi_precision=True)
    for opt in (sgd, adamw):
        model(paddle.randn([2, 3, 8, 8])).mean().backward()
        opt.step()
        opt.clear_grad()
    sd = model.state_dict()
    return {
        'state_dict': (sd, {}),
        'state_dict_protocol2': (sd, {'protocol': 2}),
        'state_dict_protocol3': (sd, {'protocol': 3}),
        'momentum_with_lr_scheduler': (sgd.state_dict(), {}),
        'adamw_multi_precision': (adamw.state_dict(), {}),
        'nested': ({'model': sd, 'epoch': 3, 'best': np.float32(0.5), 'names': ['a', ('b', 1)]}, {}),
        'train_state': ({'iteration': 3, 'best_miou': 0.25, 'seed': 0, 'scaler': None}, {}),
        'bare_tensor': (sd['0.weight'], {}),
        'list_of_tensors': ([sd['0.weight'], {'b': sd['0.bias']}], {}),
    }


@pytest.mark.parametrize('name', list(_paddle_objects()))
def test_every_paddle_format_loads_as_paddle_load_does(name, tmp_path):
    obj, kw = _paddle_objects()[name]
    path = str(tmp_path / 'x.pdparams')
    paddle.save(obj, path, **kw)
    _same(checkpoint.load_file(path), paddle.load(path))


def test_checkpoints_written_by_paddleseg_with_numpy1_load():
    """Files written in the PaddleSeg 2.8 / numpy 1.26 environment (manifest script), including
    protocol 2 (fluid.save_dygraph), paddle.static.save and a DenseTensor record."""
    manifest = json.load(open(FORMATS))
    assert manifest['versions']['numpy'].startswith('1.') and 'paddleseg' in manifest['versions']
    for name, fmt in manifest['formats'].items():
        for g in fmt['globals']:
            assert tuple(g.rsplit('.', 1)) in safe_pickle.ALLOWED, (name, g)
        got = safe_pickle.to_paddle_result(safe_pickle.unpickle(base64.b64decode(fmt['file_base64'])),
                                           return_numpy=True)
        _check_expected(got, fmt['expected'], name)


def _check_expected(got, expected, key):
    if isinstance(expected, dict) and set(expected) == {'dtype', 'shape', 'values'}:
        arr = np.asarray(got)
        assert str(arr.dtype) == expected['dtype'] and list(arr.shape) == expected['shape'], key
        np.testing.assert_array_equal(arr.ravel(), np.asarray(expected['values'], dtype=arr.dtype), err_msg=key)
    elif isinstance(expected, dict):
        assert set(got) == set(expected), (key, set(got), set(expected))
        for k in expected:
            _check_expected(got[k], expected[k], f'{key}.{k}')
    elif isinstance(expected, list):
        assert len(got) == len(expected), key
        for i, (g, e) in enumerate(zip(got, expected)):
            _check_expected(g, e, f'{key}.{i}')
    else:
        assert got == pytest.approx(expected), (key, got, expected)


def test_big_tensor_slices_are_joined(tmp_path):
    """Protocol 2/3 files split tensors over 1 GiB into slices (Paddle's UnpackBigParamInfor@@)."""
    w = np.arange(12, dtype='float32').reshape(3, 4)
    obj = {'w@@.0': w.ravel()[:5], 'w@@.1': w.ravel()[5:], 'b': np.ones(2, 'float32'),
           'UnpackBigParamInfor@@': {'w': {'OriginShape': (3, 4), 'slices': ['w@@.0', 'w@@.1']}},
           'StructuredToParameterName@@': {'w': 'linear_0.w_0', 'b': 'linear_0.b_0'}}
    path = tmp_path / 'big.pdparams'
    path.write_bytes(pickle.dumps(obj, protocol=2))
    got = checkpoint.load_file(str(path))
    assert sorted(got) == ['b', 'w']
    np.testing.assert_array_equal(got['w'].numpy(), w)
    assert got['w'].name == 'linear_0.w_0'


# -- a hostile file never runs ---------------------------------------------------------------

class _Run:
    """Pickles to ``func(*args)``, by default ``os.system('touch <marker>')``."""

    def __init__(self, marker, func=os.system, args=None):
        self.func, self.args = func, args or (f'touch {marker}',)

    def __reduce__(self):
        return self.func, self.args


def _hostile_payloads(marker):
    evil = _Run(marker)
    inner = {'conv.weight': np.zeros((2, 2), 'float32'), 'conv.bias': evil}
    yield 'os.system protocol 4', pickle.dumps(evil, protocol=4)
    yield 'os.system protocol 2', pickle.dumps(evil, protocol=2)
    yield 'os.system protocol 0', pickle.dumps(evil, protocol=0)
    yield 'inside a state dict', pickle.dumps(inner, protocol=4)
    yield 'inside an optimizer state', pickle.dumps({'LR_Scheduler': {'last_epoch': evil}}, protocol=2)
    yield 'subprocess.call', pickle.dumps(_Run(marker, subprocess.call), protocol=4)
    code = f'__import__("os").system("touch {marker}")'
    yield 'eval of code', pickle.dumps(_Run(marker, eval, (code,)), protocol=4)
    yield 'eval of code in a DenseTensor record', pickle.dumps(_Run(marker, eval, (code, {})), protocol=4)
    yield 'eval of data that runs', pickle.dumps(_Run(marker, eval, ('data', {'data': evil})), protocol=4)
    # the Python 2 name of builtins.eval (pickle maps __builtin__ -> builtins)
    yield 'py2 __builtin__.eval', (b"c__builtin__\neval\n(V__import__('os').system('touch " + marker.encode()
                                   + b"')\ntR.")
    yield 'getattr chain', b"cbuiltins\ngetattr\n(cos\nsystem\nVx\ntR."
    yield 'copyreg reconstructor', b"ccopyreg\n_reconstructor\n(cos\n_wrap_close\ncbuiltins\nobject\nNtR."
    yield 'numpy array of objects', pickle.dumps(np.array([evil, 1], dtype=object), protocol=4)
    yield 'ndarray subclass', pickle.dumps(np.zeros(2).view(np.ma.MaskedArray), protocol=4)
    yield 'persistent id', b'\x80\x04P0\n.'


def test_a_crafted_pickle_never_runs(tmp_path):
    marker = str(tmp_path / 'pwned')
    for what, data in _hostile_payloads(marker):
        path = tmp_path / 'evil.pdparams'
        path.write_bytes(data)
        with pytest.raises(CheckpointError) as e:
            checkpoint.load_file(str(path), 'model')
        msg = str(e.value)
        assert str(path) in msg and '\n' not in msg, (what, msg)
        assert 'refused: it ' in msg, (what, msg)
        assert not os.path.exists(marker), f'{what}: the payload ran'
    # the same payload through paddle.load does run: the test would notice a payload that cannot
    path.write_bytes(pickle.dumps(_Run(marker), protocol=4))
    paddle.load(str(path))
    assert os.path.exists(marker)


# -- finite weights --------------------------------------------------------------------------

def test_nonfinite_keys_names_every_poisoned_tensor():
    state = {'a': paddle.ones([2]), 'b': paddle.to_tensor([1.0, float('nan')]),
             'steps': paddle.to_tensor([3], dtype='int64'),
             'LR_Scheduler': {'last_lr': float('inf')},
             'master_weights': {'w': np.array([np.inf], 'float32')}}
    assert checkpoint.nonfinite_keys(state) == ['b', 'master_weights.w']
    with pytest.raises(CheckpointError, match='2 of 3 tensors hold NaN/inf'):
        checkpoint.require_finite(state, 'x.pdparams')


def test_loading_nonfinite_weights_into_a_model_is_refused():
    layer = paddle.nn.Linear(2, 2)
    sd = {k: v.numpy().copy() for k, v in layer.state_dict().items()}
    sd['weight'][0, 0] = np.nan
    with pytest.raises(CheckpointError, match='NaN/inf'):
        checkpoint.load_state_dict_checked(layer, sd, 'w.pdparams', strict=False)


@pytest.mark.parametrize('content,expected', [(None, 'does not exist'), (b'', 'is empty'),
                                              (b'\x80\x04\x95', 'corrupt'), (b'hello world', 'corrupt')])
def test_missing_empty_and_corrupt_files_are_one_line(tmp_path, content, expected):
    path = tmp_path / 'model.pdparams'
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=expected) as e:
        checkpoint.load_file(str(path))
    assert '\n' not in str(e.value)


def test_truncated_checkpoint_is_corrupt(tmp_path):
    path = str(tmp_path / 'model.pdparams')
    paddle.save(paddle.nn.Linear(8, 8).state_dict(), path)
    data = open(path, 'rb').read()
    open(path, 'wb').write(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match='corrupt'):
        checkpoint.load_file(path)


# -- downloads -------------------------------------------------------------------------------

class _Server:
    """A loopback HTTP server (no network): ``files[path] = bytes``; ``lie_length`` announces more."""

    def __init__(self):
        self.files, self.lie_length, self.hits = {}, set(), []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits.append(self.path)
                body = outer.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header('Content-Length', str(len(body) + (100 if self.path in outer.lie_length else 0)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.HTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


def _get(server, path, tmp_path, **kw):
    return download.download(server.url + path, cache_dir=str(tmp_path / 'cache'), allow_http=True,
                             progress=False, **kw)


def test_download_verifies_and_records_the_first_hash(server, tmp_path):
    body = b'weights v1' * 100
    server.files['/w.pdparams'] = body
    path = _get(server, '/w.pdparams', tmp_path)
    assert open(path, 'rb').read() == body
    record = json.load(open(path + download.RECORD_SUFFIX))
    assert record['sha256'] == download.file_sha256(path) and record['size'] == len(body)
    assert oct(os.stat(path).st_mode & 0o777) == '0o644'
    # cached: re-verified, not downloaded again
    assert _get(server, '/w.pdparams', tmp_path) == path and len(server.hits) == 1
    # the cache was altered: downloaded again and checked against the recorded hash
    open(path, 'ab').write(b'tampered')
    assert open(_get(server, '/w.pdparams', tmp_path), 'rb').read() == body and len(server.hits) == 2
    # the publisher's file changed: trust on first use refuses it, the cache keeps the old file
    server.files['/w.pdparams'] = b'weights v2'
    open(path, 'ab').write(b'tampered')
    with pytest.raises(CheckpointError, match=r'does not match the sha256 recorded at its first download.*delete'):
        _get(server, '/w.pdparams', tmp_path)


def test_download_refuses_a_truncated_or_wrong_file_and_caches_nothing(server, tmp_path):
    body = b'x' * 1000
    server.files['/cut.pdparams'] = body
    server.lie_length.add('/cut.pdparams')
    with pytest.raises(CheckpointError, match='incomplete: 1000 of 1100 bytes'):
        _get(server, '/cut.pdparams', tmp_path)
    server.files['/ok.pdparams'] = body
    with pytest.raises(CheckpointError, match='does not match the sha256 given'):
        _get(server, '/ok.pdparams', tmp_path, sha256='0' * 64)
    with pytest.raises(CheckpointError, match='has 1000 bytes, expected 999'):
        _get(server, '/ok.pdparams', tmp_path, size=999)
    assert os.listdir(tmp_path / 'cache') == []  # nothing cached, no temporary file left
    assert _get(server, '/ok.pdparams', tmp_path, sha256=hashlib.sha256(body).hexdigest())


def test_download_checks_the_hash_prefix_in_the_file_name(server, tmp_path):
    body = b'mmseg checkpoint'
    digest = hashlib.sha256(body).hexdigest()
    server.files[f'/fast_scnn_20210630_164853-{digest[:8]}.pth'] = body
    assert _get(server, f'/fast_scnn_20210630_164853-{digest[:8]}.pth', tmp_path)
    server.files['/fast_scnn_20210630_164853-0cec9937.pth'] = body
    with pytest.raises(CheckpointError, match='does not match the hash in its file name'):
        _get(server, '/fast_scnn_20210630_164853-0cec9937.pth', tmp_path)
    assert download.name_hash_prefix('https://x/model-20210630.pth') is None  # a date, not a hash
    assert download.name_hash_prefix('https://x/model.pdparams') is None


@pytest.mark.parametrize('url,expected', [('http://example.com/w.pdparams', 'plain http'),
                                          ('ftp://example.com/w.pdparams', 'only https'),
                                          ('file:///etc/passwd', 'only https')])
def test_download_refuses_anything_but_https(url, expected, tmp_path):
    with pytest.raises(CheckpointError, match=expected):
        download.download(url, cache_dir=str(tmp_path))
    assert not os.listdir(tmp_path)


def test_resolve_path_checks_a_local_file_against_a_given_hash(tmp_path):
    path = tmp_path / 'w.pdparams'
    path.write_bytes(b'abc')
    assert download.resolve_path(str(path)) == str(path)
    with pytest.raises(CheckpointError, match='does not match the expected'):
        download.resolve_path(str(path), sha256='f' * 64)


# -- atomic writes ---------------------------------------------------------------------------

def test_atomic_dir_replaces_only_when_complete(tmp_path):
    final = tmp_path / 'iter_1'
    with atomic.atomic_dir(str(final)) as tmp:
        open(os.path.join(tmp, 'a'), 'w').write('v1')
    with pytest.raises(RuntimeError):
        with atomic.atomic_dir(str(final)) as tmp:
            open(os.path.join(tmp, 'a'), 'w').write('v2')
            raise RuntimeError('killed')
    assert open(final / 'a').read() == 'v1' and os.listdir(tmp_path) == ['iter_1']
    with pytest.raises(atomic.WriteError, match=r'cannot write checkpoint .*iter_1: No space left on device; '
                                                r'the old one is intact'):
        with atomic.atomic_dir(str(final), 'checkpoint', kept='the old one') as tmp:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert open(final / 'a').read() == 'v1' and os.listdir(tmp_path) == ['iter_1']
    assert oct(os.stat(final).st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_atomic_save_keeps_the_umask_mode_and_refuses_a_folder(tmp_path):
    out = tmp_path / 'w.pdparams'
    atomic.atomic_save({'w': paddle.ones([2])}, str(out))
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o666 & ~_umask())
    with pytest.raises(atomic.WriteError, match='it is a folder'):
        atomic.atomic_save({'w': paddle.ones([2])}, str(tmp_path))


def test_atomic_write_text(tmp_path):
    out = tmp_path / 'report.txt'
    atomic.atomic_write_text(str(out), 'v1\n')
    with pytest.raises(atomic.WriteError, match='report.txt: No space left'):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(atomic.os, 'replace', lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, 'No space left')))
            atomic.atomic_write_text(str(out), 'v2\n')
    assert out.read_text() == 'v1\n' and os.listdir(tmp_path) == ['report.txt']
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o666 & ~_umask())


def test_remove_dir_and_leftovers(tmp_path):
    d = tmp_path / 'iter_1'
    d.mkdir()
    (d / 'model.pdparams').write_bytes(b'x')
    (tmp_path / '.iter_2.abc.tmp').mkdir()
    (tmp_path / '.iter_0.xyz.trash').mkdir()
    atomic.remove_dir(str(d))
    assert sorted(os.listdir(tmp_path)) == ['.iter_0.xyz.trash', '.iter_2.abc.tmp']
    assert sorted(atomic.clean_leftovers(str(tmp_path))) == ['.iter_0.xyz.trash', '.iter_2.abc.tmp']
    assert os.listdir(tmp_path) == []


# -- the save_dir lock -----------------------------------------------------------------------

def test_lock_refuses_a_live_run_and_takes_over_a_dead_one(tmp_path, caplog):
    save_dir = str(tmp_path / 'out')
    with lock.SaveDirLock(save_dir):
        info = json.load(open(os.path.join(save_dir, '.lock')))
        assert info['pid'] == os.getpid() and info['host'] == socket.gethostname()
        with pytest.raises(lock.SaveDirLocked, match='is in use by another run'):
            lock.SaveDirLock(save_dir).acquire()
    assert not os.path.exists(os.path.join(save_dir, '.lock'))
    # a dead run's lock: pid of a finished process
    p = subprocess.Popen([sys.executable, '-c', 'pass'])
    p.wait()
    json.dump({'host': socket.gethostname(), 'pid': p.pid, 'start': 1, 'since': 'then'},
              open(os.path.join(save_dir, '.lock'), 'w'))
    with lock.SaveDirLock(save_dir) as held:
        assert held.held and json.load(open(held.path))['pid'] == os.getpid()
    # a live pid that belongs to another process now (pid reuse): start time differs
    json.dump({'host': socket.gethostname(), 'pid': os.getppid(), 'start': -5, 'since': 'then'},
              open(os.path.join(save_dir, '.lock'), 'w'))
    lock.SaveDirLock(save_dir).acquire().release()
    # another machine's lock cannot be checked from here
    json.dump({'host': 'elsewhere', 'pid': 1, 'since': 'then'}, open(os.path.join(save_dir, '.lock'), 'w'))
    with pytest.raises(lock.SaveDirLocked, match=r'another machine .* delete .*\.lock'):
        lock.SaveDirLock(save_dir).acquire()


def test_atomic_dir_never_replaces_a_file_with_a_folder(tmp_path):
    """``export.py --save_dir notes.txt`` must not swap the user's file for an export folder."""
    target = tmp_path / 'notes.txt'
    target.write_text('keep me')
    with pytest.raises(atomic.WriteError, match='it is a file, not a folder'):
        with atomic.atomic_dir(str(target), 'export folder'):
            raise AssertionError('nothing may be written')
    assert target.read_text() == 'keep me'
    assert sorted(os.listdir(tmp_path)) == ['notes.txt']
