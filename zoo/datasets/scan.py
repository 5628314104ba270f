"""The one scanner of dataset files: the trainer's pre-flight check and ``tools/data/check_dataset.py``.

Every image and label of a dataset is inspected once, in parallel, and the result is cached per
file under ``$ZOO_HOME/scan`` (default ``~/.cache/paddle_seg_zoo/scan``; ``ZOO_SCAN_CACHE``
overrides the folder), keyed by (path, size, mtime), so a second run only stats the files.

What is read, and why (times for a 2048x1024 PNG under load, see docs/data.md):

* **Image, PNG**: the chunk structure is walked and every chunk's CRC-32 checked up to ``IEND``
  (about 12 ms, against 210 ms for a full decode): a truncated or damaged file fails, and the
  header gives the size.
* **Image, JPEG**: decoded by Pillow at 1/8 scale (``draft``): the whole entropy-coded stream is
  read, so truncation raises, where OpenCV's libjpeg only warns ("Premature end of JPEG file")
  and hands back a grey-filled image. The EXIF orientation is applied to the size, as OpenCV's
  ``imread`` applies it to the pixels.
* **Image, other formats**: decoded by OpenCV, as the loader does.
* **Label**: decoded by OpenCV with ``IMREAD_UNCHANGED``, exactly as ``read_label`` does, and
  the header of a PNG read for its colour type and bit depth (palette and 1/2/4-bit PNGs are
  what OpenCV silently expands). The record keeps the per-value pixel histogram, so the dataset
  checks and ``check_dataset.py``'s statistics need no second pass.

A record describes the file, not the dataset: the dataset's own label mapping
(``encode_label``: ``reduce_zero_label``, COCO-Stuff's id table, ...) is applied afterwards to
the histogram through a 256-entry table (:func:`label_lut`), so one cache serves every config.
"""
import hashlib
import io
import json
import multiprocessing
import os
import struct
import sys
import time
import zlib

import cv2
import numpy as np

from ..utils.atomic import WriteError, atomic_write_text
from ..utils.errors import DataError
from ..utils.logger import logger

SCAN_VERSION = 1
MAX_VALUES = 256  # distinct values (or colours) kept per label record
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# PNG colour type -> (channels as stored, name)
PNG_COLOR_TYPES = {0: (1, 'gray'), 2: (3, 'rgb'), 3: (1, 'palette'), 4: (2, 'gray+alpha'), 6: (4, 'rgba')}
INVALID = -1  # label_lut entry of a stored value the dataset's mapping rejects


class _Corrupt(Exception):
    """A file fails its integrity check (the message says how)."""


# -- one file (runs in the worker processes) ------------------------------------------

def sniff_format(head):
    if head.startswith(PNG_SIGNATURE):
        return 'png'
    if head.startswith(b'\xff\xd8\xff'):
        return 'jpeg'
    if head.startswith(b'BM'):
        return 'bmp'
    if head[:4] in (b'II*\x00', b'MM\x00*'):
        return 'tiff'
    if head[:4] == b'RIFF' and head[8:12] == b'WEBP':
        return 'webp'
    return None


def png_header(data, verify=False):
    """IHDR of a PNG as ``(width, height, bit_depth, color_type)``.

    ``verify``: walk every chunk, check its CRC-32 and require ``IEND`` (a truncated or
    bit-flipped file raises _Corrupt) without inflating the pixels.
    """
    if len(data) < 33 or data[12:16] != b'IHDR':
        raise _Corrupt('PNG without an IHDR header (truncated or not a PNG)')
    width, height, depth, ctype = struct.unpack('>IIBB', data[16:26])
    if ctype not in PNG_COLOR_TYPES:
        raise _Corrupt(f'PNG with an invalid colour type {ctype}')
    if verify:
        pos, n, seen_idat = 8, len(data), False
        while True:
            if pos + 12 > n:
                raise _Corrupt('truncated PNG (ends before IEND)')
            length, kind = struct.unpack('>I4s', data[pos:pos + 8])
            end = pos + 12 + length
            if end > n:
                raise _Corrupt(f'truncated PNG (chunk {kind.decode("latin-1")!r} cut short)')
            crc, = struct.unpack('>I', data[end - 4:end])
            if zlib.crc32(data[pos + 4:end - 4]) != crc:
                raise _Corrupt(f'corrupt PNG (CRC mismatch in chunk {kind.decode("latin-1")!r})')
            seen_idat |= kind == b'IDAT'
            pos = end
            if kind == b'IEND':
                break
        if not seen_idat:
            raise _Corrupt('PNG without image data (no IDAT chunk)')
    return width, height, depth, ctype


def _exif_transposed(im):
    """Whether the EXIF orientation (5-8) swaps width and height when OpenCV applies it."""
    try:
        return im.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except Exception:  # noqa: BLE001  (a broken EXIF block: OpenCV ignores it too)
        return False


def _inspect_jpeg(data, rec):
    from PIL import Image
    try:
        im = Image.open(io.BytesIO(data))
        w, h = im.size
        rec['channels'] = len(im.getbands())
        swap = _exif_transposed(im)
        im.draft(im.mode, (max(1, w // 8), max(1, h // 8)))  # DCT-domain scaling; every byte still read
        im.load()
    except Exception as e:  # noqa: BLE001  (Pillow raises OSError, SyntaxError, ValueError, ...)
        raise _Corrupt(f'truncated or corrupt JPEG ({e})') from None
    rec['width'], rec['height'] = (h, w) if swap else (w, h)
    rec['dtype'] = 'uint8'


def _decode_cv2(data, flags):
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if arr is None:
        raise _Corrupt('cannot be decoded (truncated, corrupt or not an image)')
    return arr


def _inspect_image(data, fmt, rec):
    if fmt == 'png':
        w, h, depth, ctype = png_header(data, verify=True)
        rec.update(width=w, height=h, channels=PNG_COLOR_TYPES[ctype][0], bit_depth=depth,
                   dtype='uint16' if depth == 16 else 'uint8')
    elif fmt == 'jpeg':
        _inspect_jpeg(data, rec)
    else:
        arr = _decode_cv2(data, cv2.IMREAD_UNCHANGED)
        rec.update(width=int(arr.shape[1]), height=int(arr.shape[0]), channels=1 if arr.ndim == 2 else int(arr.shape[2]),
                   dtype=str(arr.dtype))


def _value_histogram(arr):
    """``(values, counts)`` of a 2-D label (all 256 bins of uint8 via OpenCV's fast histogram)."""
    if arr.dtype == np.uint8:
        counts = cv2.calcHist([arr], [0], None, [256], [0, 256]).ravel().astype(np.int64)
        values = np.flatnonzero(counts)
        return values.tolist(), counts[values].tolist()
    values, counts = np.unique(arr, return_counts=True)
    return values.tolist(), counts.tolist()


def _inspect_label(data, fmt, rec):
    if fmt == 'png':
        w, h, depth, ctype = png_header(data)
        rec.update(bit_depth=depth, png_color=PNG_COLOR_TYPES[ctype][1])
    arr = _decode_cv2(data, cv2.IMREAD_UNCHANGED)  # what read_label sees
    rec.update(width=int(arr.shape[1]), height=int(arr.shape[0]), channels=1 if arr.ndim == 2 else int(arr.shape[2]),
               dtype=str(arr.dtype))
    if arr.ndim == 2:
        values, counts = _value_histogram(arr)
    elif rec.get('png_color') == 'palette':
        from PIL import Image  # the stored palette indices (often the intended class ids)
        values, counts = _value_histogram(np.asarray(Image.open(io.BytesIO(data))))
    else:
        rgb = arr[..., 2::-1].astype(np.int64)  # OpenCV's BGR(A) -> RGB, alpha dropped
        rec['channels_equal'] = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
        packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        values, counts = _value_histogram(packed)
        rec['colors'] = len(values)
    if len(values) > MAX_VALUES:  # keep the most frequent (a 16-bit depth map or a photo as "label")
        keep = sorted(np.argsort(counts)[::-1][:MAX_VALUES])
        rec['values_truncated'] = len(values)
        values, counts = [values[i] for i in keep], [counts[i] for i in keep]
    rec['values'], rec['counts'] = values, counts


def inspect_file(path, kind):
    """Record of one file: ``kind`` is 'image' or 'label'. Never raises for a bad file: the
    problem goes to ``record['error']``."""
    rec = {'kind': kind, 'error': None}
    try:
        st = os.stat(path)
    except OSError as e:
        rec['error'] = f'cannot be read ({e.strerror})'
        return rec
    rec.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
    if st.st_size == 0:
        rec['error'] = 'is empty (0 bytes)'
        return rec
    try:
        with open(path, 'rb') as f:
            data = f.read()
        fmt = sniff_format(data[:16])
        rec['format'] = fmt
        (_inspect_image if kind == 'image' else _inspect_label)(data, fmt, rec)
    except _Corrupt as e:
        rec['error'] = str(e) if str(e).startswith(('truncated', 'corrupt', 'cannot')) else f'is invalid: {e}'
    except OSError as e:
        rec['error'] = f'cannot be read ({e.strerror or e})'
    return rec


def _inspect_task(task):
    return task, inspect_file(*task)


# -- the cache ----------------------------------------------------------------------

def cache_dir():
    env = os.environ.get('ZOO_SCAN_CACHE')
    if env:
        return os.path.expanduser(env)
    return os.path.join(os.path.expanduser(os.environ.get('ZOO_HOME', '~/.cache/paddle_seg_zoo')), 'scan')


def _cache_file(folder, paths):
    common = os.path.commonpath([os.path.dirname(p) for p in paths])
    return os.path.join(folder, hashlib.sha1(common.encode('utf-8')).hexdigest()[:16] + '.json'), common


def _load_cache(path):
    try:
        with open(path, 'r', encoding='utf-8') as f:
            data = json.load(f)
        if data.get('version') == SCAN_VERSION and isinstance(data.get('records'), dict):
            return data['records']
    except (OSError, ValueError):
        pass  # no cache, or a damaged one: scan again
    return {}


def _save_cache(path, root, records):
    """Write atomically (temp file + rename); a cache that cannot be written is only a warning."""
    try:
        atomic_write_text(path, json.dumps({'version': SCAN_VERSION, 'root': root, 'records': records},
                                           separators=(',', ':')), 'data scan cache')
    except WriteError as e:
        logger.warning(f'data scan: {e}; the next run scans again')


def _fresh(rec, path):
    try:
        st = os.stat(path)
    except OSError:
        return False
    return rec.get('size') == st.st_size and rec.get('mtime_ns') == st.st_mtime_ns


# -- many files -----------------------------------------------------------------------

class _Progress:
    """A bar on a terminal, else a log line every ``every`` files."""

    def __init__(self, total, desc, enabled, every=500):
        self.total, self.desc, self.every, self.done = total, desc, every, 0
        self.bar = None
        self.enabled = enabled and total > 0
        if self.enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True, leave=False)

    def update(self):
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
        elif self.enabled and (self.done % self.every == 0 or self.done == self.total):
            logger.info(f'{self.desc}: {self.done}/{self.total} files')

    def close(self):
        if self.bar is not None:
            self.bar.close()


def scan_files(tasks, num_workers=0, use_cache=True, progress=True, desc='data scan'):
    """Inspect ``[(path, kind), ...]``; return ``({(path, kind): record}, stats)``.

    ``num_workers`` > 0 decodes in that many processes. Records of unchanged files come from
    the cache; ``stats`` counts ``files``, ``cached`` and ``seconds``.
    """
    t0 = time.perf_counter()
    tasks = list(dict.fromkeys((os.path.abspath(p), k) for p, k in tasks))
    if not tasks:
        return {}, {'files': 0, 'cached': 0, 'seconds': 0.0}
    cache_path, root = _cache_file(cache_dir(), [p for p, _ in tasks])
    cached = _load_cache(cache_path) if use_cache else {}
    out, todo = {}, []
    for task in tasks:
        rec = cached.get(f'{task[1]}:{task[0]}')
        if rec is not None and _fresh(rec, task[0]):
            out[task] = rec
        else:
            todo.append(task)
    bar = _Progress(len(todo), desc, progress)
    try:
        if num_workers > 0 and len(todo) > 1:
            pool = multiprocessing.get_context().Pool(min(num_workers, len(todo)))
            try:
                for task, rec in pool.imap_unordered(_inspect_task, todo, chunksize=8):
                    out[task] = rec
                    bar.update()
            finally:
                # close + join, not terminate: paddle (imported with zoo) prints a crash report when a
                # worker gets SIGTERM
                pool.close()
                pool.join()
        else:
            for task in todo:
                out[task] = inspect_file(*task)
                bar.update()
    finally:
        bar.close()
    if use_cache and todo:
        cached = _load_cache(cache_path)  # another run may have added records meanwhile
        cached.update({f'{k}:{p}': r for (p, k), r in out.items() if 'size' in r})
        _save_cache(cache_path, root, cached)
    return out, {'files': len(tasks), 'cached': len(tasks) - len(todo), 'seconds': time.perf_counter() - t0}


# -- a dataset's files and label mapping ----------------------------------------------

def base_dataset(dataset):
    """The file-list dataset inside wrappers such as ``ClassUniformDataset``."""
    seen = 0
    while not hasattr(dataset, 'file_list') and hasattr(dataset, 'dataset') and seen < 10:
        dataset, seen = dataset.dataset, seen + 1
    if not hasattr(dataset, 'file_list'):
        raise DataError(f'{type(dataset).__name__}: cannot scan a dataset without a file list')
    return dataset


def dataset_tasks(dataset):
    tasks = []
    for img, lab in base_dataset(dataset).file_list:
        tasks.append((img, 'image'))
        if lab is not None:
            tasks.append((lab, 'label'))
    return tasks


def label_lut(dataset):
    """The dataset's mapping of stored 8-bit values as a table: ``lut[v]`` is the train id of stored
    value ``v`` (possibly the ignore index, possibly out of range), or ``INVALID`` where the
    dataset rejects ``v`` for another reason (e.g. not a COCO-Stuff id). Asks the dataset's own
    ``encode_label`` value by value (every loader's mapping is per value) and ``map_label`` for
    what a rejected value would have become."""
    values = np.arange(256, dtype=np.int64)
    mapped = np.asarray(dataset.map_label(values[None].copy()), dtype=np.int64).reshape(256)
    lut = np.empty(256, dtype=np.int64)
    for v in range(256):
        try:
            lut[v] = int(np.asarray(dataset.encode_label(np.array([[v]], dtype=np.int64), '<lut>')).reshape(-1)[0])
        except DataError:
            m = int(mapped[v])
            in_range = m == dataset.ignore_index or 0 <= m < dataset.num_classes
            lut[v] = INVALID if in_range else m
    return lut


def _fmt_values(values, limit=6):
    vals = sorted(values)
    return '[' + ', '.join(map(str, vals[:limit])) + (', ...' if len(vals) > limit else '') + ']'


def label_format_problem(rec):
    """Why a label file cannot be read as single-channel 8-bit class ids (None if it can)."""
    if rec.get('format') == 'jpeg':
        return 'is a JPEG; labels must be lossless (PNG): JPEG compression changes class ids at edges'
    if rec.get('png_color') == 'palette':
        return ('is a palette PNG, which OpenCV reads as 3-channel colours; convert it to single-channel ids '
                'with tools/data/pseudo_color2gray.py')
    if rec.get('channels', 1) != 1:
        if rec.get('channels_equal'):
            return (f'has {rec["channels"]} channels (all equal); save one channel: '
                    'tools/data/pseudo_color2gray.py')
        return (f'has {rec["channels"]} channels ({rec.get("colors", "?")} colours): labels must be single-channel '
                'class ids; convert colours with tools/data/pseudo_color2gray.py --palette')
    if rec.get('dtype') != 'uint8':
        return f'is {rec.get("dtype")} (16-bit); labels must be 8-bit single-channel class ids (0..255)'
    if rec.get('bit_depth', 8) < 8:
        return (f'is a {rec["bit_depth"]}-bit PNG, which OpenCV scales to 0..255 (a 0/1 mask reads as 0/255); '
                're-save it as 8-bit')
    return None


def sample_problems(img_path, lab_path, records, lut=None, num_classes=None, ignore_index=255):
    """One-line problems of one ``(image, label)`` pair, each starting with the file's path.

    ``lut``/``num_classes`` None skip the value check (``check_dataset.py`` without a class count).
    """
    problems = []
    img = records[(os.path.abspath(img_path), 'image')]
    if img['error']:
        problems.append(f'image {img_path!r} {img["error"]}')
    if lab_path is None:
        return problems
    lab = records[(os.path.abspath(lab_path), 'label')]
    if lab['error']:
        problems.append(f'label {lab_path!r} {lab["error"]}')
        return problems
    fmt = label_format_problem(lab)
    if fmt:
        problems.append(f'label {lab_path!r} {fmt}')
        return problems
    if not img['error'] and (lab['width'], lab['height']) != (img['width'], img['height']):
        problems.append(f'label {lab_path!r} is {lab["width"]}x{lab["height"]} but its image {img_path!r} is '
                        f'{img["width"]}x{img["height"]} (W x H)')
    if lut is not None and num_classes is not None:
        values = np.asarray(lab['values'], dtype=np.int64)
        mapped = lut[values]
        bad = (mapped == INVALID) | ((mapped != ignore_index) & ((mapped < 0) | (mapped >= num_classes)))
        if bad.any():
            shown = _fmt_values(values[bad].tolist())
            after = {int(m) for m in mapped[bad] if m != INVALID}
            changed = any(m not in (INVALID, v) for v, m in enumerate(lut.tolist()))
            how = f" (stored values; after the dataset's mapping: {_fmt_values(after)})" if changed and after else ''
            problems.append(f'label {lab_path!r} has values {shown}{how} outside [0, {num_classes - 1}] '
                            f'(ignore index {ignore_index})')
    return problems


def dataset_problems(dataset, records):
    """Every problem of a dataset's samples given the scan ``records``."""
    ds = base_dataset(dataset)
    lut = label_lut(ds)
    out = []
    for img, lab in ds.file_list:
        out += sample_problems(img, lab, records, lut, ds.num_classes, ds.ignore_index)
    return out


# -- the trainer's pre-flight check ---------------------------------------------------

def preflight_check(datasets, num_workers=0, max_report=20, rank=0, world_size=1):
    """Scan every sample of ``datasets`` (``{'train': ds, 'val': ds_or_None}``) before training.

    Logs each problem (up to ``max_report``) naming the file, then raises one DataError
    summing them up. In a distributed run rank 0 scans (and fills the cache) while the other
    ranks wait at a barrier; then they read the cache, so every rank raises the same error.
    """
    datasets = {k: v for k, v in datasets.items() if v is not None}
    tasks = [t for ds in datasets.values() for t in dataset_tasks(ds)]
    if world_size > 1:
        import paddle.distributed as dist
        if rank == 0:
            records, stats = scan_files(tasks, num_workers, progress=True, desc='pre-flight data check')
        dist.barrier()
        if rank != 0:
            records, stats = scan_files(tasks, num_workers, progress=False)
    else:
        records, stats = scan_files(tasks, num_workers, progress=True, desc='pre-flight data check')
    problems = []
    for name, ds in datasets.items():
        problems += [(name, p) for p in dataset_problems(ds, records)]
    counts = ' + '.join(f'{len(base_dataset(ds).file_list)} {name}' for name, ds in datasets.items())
    if problems:
        for name, p in problems[:max_report]:
            logger.error(f'pre-flight data check ({name}): {p}')
        if len(problems) > max_report:
            logger.error(f'pre-flight data check: ... and {len(problems) - max_report} more')
        raise DataError(f'pre-flight data check: {len(problems)} problem(s) in {counts} samples, the first: '
                        f'{problems[0][1]} (fix the data, or skip this check with --skip_data_check)')
    logger.info(f'pre-flight data check: {counts} samples OK ({stats["files"]} files, {stats["cached"]} from the '
                f'cache, {stats["seconds"]:.1f} s)')
    return stats
