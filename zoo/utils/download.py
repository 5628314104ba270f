"""Fetch weights from a URL into a verified cache (``$ZOO_HOME``, default ``~/.cache/paddle_seg_zoo``).

Policy (docs/weights.md, "Downloads"):

* **https only.** ``http://`` (and a redirect from https to http) is refused unless the caller
  passes ``allow_http=True``; other schemes are refused.
* **What a file is checked against**, first match wins:
  1. the ``sha256`` the caller gives (the weights tables of the model files);
  2. the sha256 *prefix* in the file name, the convention of torch hub and OpenMMLab
     (``..._20210630_164853-0cec9937.pth``: 8 or more hex digits after the last ``-``; an
     8-digit group that reads as a date, ``-20210630.``, is not taken for a hash);
  3. otherwise **trust on first use**: the sha256 of the first complete download is recorded
     beside the cached file (``<file>.sha256``) and every later use must match it.
* **Length**: the bytes received must equal the server's ``Content-Length`` (a cut connection
  is not a file) and ``size`` when the caller gives it.
* The download goes to a hidden temporary file in the cache folder and is renamed to its
  final name only after every check passed; a cached file is re-hashed before each use
  (a cache entry without a record, e.g. from an older version, is downloaded again).

Every failure is a one-line :class:`CheckpointError` naming the URL or file.
"""
import hashlib
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

from .atomic import atomic_file, atomic_write_text
from .errors import CheckpointError
from .logger import logger

CACHE_DIR = os.path.expanduser(os.environ.get('ZOO_HOME', '~/.cache/paddle_seg_zoo'))
_NAME_HASH = re.compile(r'-([0-9a-f]{8,64})\.[A-Za-z0-9.]+$')
_DATE = re.compile(r'^(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$')
RECORD_SUFFIX = '.sha256'


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def is_url(path_or_url):
    return '://' in str(path_or_url)


def name_hash_prefix(url):
    """The sha256 prefix a torch-hub / OpenMMLab style file name carries, or None."""
    name = os.path.basename(urllib.parse.urlparse(str(url)).path)
    m = _NAME_HASH.search(name)
    if not m or _DATE.match(m.group(1)):
        return None
    return m.group(1)


def cache_path(url, cache_dir=None):
    name = os.path.basename(urllib.parse.urlparse(url).path) or 'weights'
    digest = hashlib.sha1(url.encode()).hexdigest()[:8]  # one URL, one cache entry
    return os.path.join(cache_dir or CACHE_DIR, f'{digest}_{name}')


def _read_record(path):
    try:
        with open(path + RECORD_SUFFIX, encoding='utf-8') as f:
            return json.load(f).get('sha256')
    except (OSError, ValueError, AttributeError):
        return None


def _write_record(path, url, digest, size):
    atomic_write_text(path + RECORD_SUFFIX, json.dumps({'url': url, 'sha256': digest, 'size': size}), 'download record')


def _mismatch(digest, expected):
    """Whether ``digest`` fails ``expected`` (a full sha256 or a prefix of one)."""
    return expected is not None and not digest.startswith(expected.lower())


def _check_scheme(url, allow_http):
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme == 'https' or (scheme == 'http' and allow_http):
        return
    if scheme == 'http':
        raise CheckpointError(f'refusing to download {url}: plain http can be altered on the way; '
                              'use an https URL (or download it yourself and pass the local file)')
    raise CheckpointError(f'cannot download {url}: only https URLs are supported')


def _fetch(url, tmp, allow_http, progress):
    """Stream ``url`` into ``tmp``; returns (sha256, bytes received, Content-Length or None)."""
    h = hashlib.sha256()
    received = 0
    with urllib.request.urlopen(url, timeout=60) as r, open(tmp, 'wb') as f:
        _check_scheme(r.geturl(), allow_http)  # no silent redirect from https to http
        total = r.headers.get('Content-Length')
        total = int(total) if total and total.isdigit() else None
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=total, unit='B', unit_scale=True, file=sys.stderr, leave=False)
        try:
            while True:
                chunk = r.read(1 << 20)
                if not chunk:
                    break
                f.write(chunk)
                h.update(chunk)
                received += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    return h.hexdigest(), received, total


def download(url, sha256=None, cache_dir=None, size=None, allow_http=False, progress=True):
    """Download ``url`` into the cache once, verified (see the module docstring); return the path."""
    url = str(url)
    _check_scheme(url, allow_http)
    dst = cache_path(url, cache_dir)
    recorded = _read_record(dst)
    expected = sha256 or name_hash_prefix(url) or recorded
    source = ('the sha256 given' if sha256 else 'the hash in its file name' if name_hash_prefix(url)
              else 'the sha256 recorded at its first download')
    if os.path.isfile(dst) and recorded is not None:
        digest = file_sha256(dst)
        if not _mismatch(digest, expected) and not _mismatch(digest, recorded):
            return dst
        logger.warning(f'cached {dst} does not match {source} (sha256 {digest}); downloading it again')
    logger.info(f'downloading {url} -> {dst}')
    with atomic_file(dst, 'download') as tmp:  # renamed to dst only when every check passed
        try:
            digest, received, total = _fetch(url, tmp, allow_http, progress)
        except CheckpointError:
            raise
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, 'reason', None) or e
            raise CheckpointError(f'cannot download {url}: {reason}') from None
        if total is not None and received != total:
            raise CheckpointError(f'download of {url} is incomplete: {received} of {total} bytes')
        if size is not None and received != int(size):
            raise CheckpointError(f'download of {url} has {received} bytes, expected {int(size)}')
        if _mismatch(digest, expected):
            hint = (f'; if the publisher replaced the file on purpose, delete {dst + RECORD_SUFFIX}'
                    if expected is recorded else '')
            raise CheckpointError(f'download of {url} does not match {source}: sha256 {digest}, '
                                  f'expected {expected}{hint}')
        if recorded is None:
            _write_record(dst, url, digest, received)
    return dst


def resolve_path(path_or_url, sha256=None):
    """A local path for ``path_or_url``: URLs are downloaded (verified); a local file is
    checked against ``sha256`` when one is given."""
    if is_url(path_or_url):
        return download(path_or_url, sha256=sha256)
    path = str(path_or_url)
    if sha256 is not None and os.path.isfile(path):
        digest = file_sha256(path)
        if _mismatch(digest, sha256):
            raise CheckpointError(f'{path}: sha256 {digest} does not match the expected {sha256}')
    return path
