"""Serve an exported segmentation model with Paddle Inference (or ONNX Runtime).

    python deploy/python/infer.py --config output/export/deploy.yaml --image_path img.png \
        [--device cpu|gpu] [--enable_mkldnn] [--cpu_threads N] [--use_trt] \
        [--precision fp32|fp16|int8] [--batch_size N] [--backend paddle|onnxruntime] \
        [--save_dir S] [--benchmark [--warmup W --repeats K --json out.json]]

This file is self-contained on purpose: it imports only paddle, numpy, opencv and yaml (and
onnxruntime for that backend), never the training library, so a deployment machine needs
nothing but this script and the folder ``tools/export.py`` wrote. The preprocessing ops
re-implement the training-time val transforms of ``zoo/datasets/transforms.py`` exactly
(same sizes, same rounding, same OpenCV interpolation), so deployed and evaluated
predictions agree.
"""
import argparse
import hashlib
import json
import os
import resource
import sys
import time

import cv2
import numpy as np
import yaml

PROGRAM_FILES = ('model.json', 'model.pdmodel')  # Paddle 3 (PIR) writes .json; Paddle 2 .pdmodel
OUTPUT_OPS = ('argmax', 'softmax', 'none')
IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


class DeployError(Exception):
    """A user-caused problem (bad deploy.yaml, missing file, unreadable image): one line."""


# -- deploy.yaml ----------------------------------------------------------------------

def _check_pair(name, key, value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value, value]
    if not (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in value)):
        raise DeployError(f'{name}: {key}: expected two positive numbers, got {value!r}')
    return [int(v) for v in value]


class Normalize:
    """``(img - mean) / std`` per RGB channel in 0-255 units."""

    def __init__(self, mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5)):
        self.mean = np.asarray(mean, dtype=np.float32).reshape(1, 1, 3)
        self.std = np.asarray(std, dtype=np.float32).reshape(1, 1, 3)

    def __call__(self, img):
        return (img - self.mean) / self.std


class Resize:
    """To ``target_size`` (w, h); with ``keep_ratio`` the mmcv rule: the largest size of the
    same aspect ratio whose long side fits max(target) and short side min(target)."""

    def __init__(self, target_size=(2048, 1024), keep_ratio=False):
        self.target_size = _check_pair('Resize', 'target_size', target_size)
        self.keep_ratio = bool(keep_ratio)

    def __call__(self, img):
        h, w = img.shape[:2]
        if self.keep_ratio:
            f = min(max(self.target_size) / max(h, w), min(self.target_size) / min(h, w))
            new_w, new_h = int(w * f + 0.5), int(h * f + 0.5)
        else:
            new_w, new_h = self.target_size
        return _resize(img, new_w, new_h)


class ResizeByShort:
    """Short side to ``short_size`` (lowered so the long side stays within ``max_size`` > 0)."""

    def __init__(self, short_size=1024, max_size=-1):
        self.short_size = int(short_size)
        self.max_size = int(max_size)

    def __call__(self, img):
        h, w = img.shape[:2]
        short = self.short_size
        if self.max_size > 0 and short / min(h, w) * max(h, w) > self.max_size:
            short = int(self.max_size / max(h, w) * min(h, w))
        s = short / min(h, w)
        return _resize(img, int(round(w * s)), int(round(h * s)))


def _resize(img, w, h):
    if img.shape[1] == w and img.shape[0] == h:
        return img
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)


TRANSFORMS = {'Normalize': Normalize, 'Resize': Resize, 'ResizeByShort': ResizeByShort}


class DeployConfig:
    """``deploy.yaml`` as written by tools/export.py, checked, with absolute file paths."""

    def __init__(self, path):
        self.path = path
        if not os.path.isfile(path):
            raise DeployError(f'deploy config {path!r} does not exist (expected the deploy.yaml that '
                              'tools/export.py writes)')
        try:
            with open(path, 'r', encoding='utf-8') as f:
                dic = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise DeployError(f'{path}: not valid YAML: {getattr(e, "problem", e)}') from None
        if not isinstance(dic, dict) or not isinstance(dic.get('Deploy'), dict):
            raise DeployError(f'{path}: expected a top-level "Deploy" mapping (written by tools/export.py)')
        d = dic['Deploy']
        self.dir = os.path.dirname(os.path.abspath(path))
        self.model_file = self._program(d.get('model'))
        self.params_file = self._file(d, 'params', required=True)
        self.onnx_file = self._file(d, 'onnx', required=False)
        self.output_op = d.get('output_op', 'argmax')
        if self.output_op not in OUTPUT_OPS:
            raise DeployError(f'{path}: output_op: expected one of {", ".join(OUTPUT_OPS)}, got {self.output_op!r}')
        self.output_dtype = d.get('output_dtype', 'int32' if self.output_op == 'argmax' else 'float32')
        shape = d.get('input_shape', [-1, 3, -1, -1])
        if not (isinstance(shape, list) and len(shape) == 4 and all(isinstance(s, int) for s in shape)
                and shape[1] == 3 and all(s == -1 or s > 0 for s in shape)):
            raise DeployError(f'{path}: input_shape: expected [N, 3, H, W] with -1 for dynamic sizes, got {shape!r}')
        self.input_shape = shape
        self.transforms = self._transforms(d.get('transforms') or [])
        self._verify(d.get('sha256') or {})

    def _verify(self, digests):
        """The files must be the ones this deploy.yaml was written with (tools/export.py records
        their SHA-256): Paddle Inference happily runs a params file of another model."""
        if not isinstance(digests, dict):
            raise DeployError(f'{self.path}: sha256: expected a mapping of file name to digest')
        for path in (self.model_file, self.params_file, self.onnx_file):
            if path is None:
                continue
            want = digests.get(os.path.basename(path))
            if want is None:
                continue  # a program found under its other name, or a hand-written deploy.yaml
            h = hashlib.sha256()
            with open(path, 'rb') as f:
                for chunk in iter(lambda: f.read(1 << 20), b''):
                    h.update(chunk)
            if h.hexdigest() != want:
                raise DeployError(f'{self.path}: {path!r} is not the file this deploy.yaml was exported with '
                                  '(SHA-256 differs); re-export or copy the whole export folder')

    def _program(self, name):
        """The named program file; ``model.json`` and ``model.pdmodel`` stand in for each other."""
        if name is None:
            raise DeployError(f'{self.path}: missing key "model" (the program file, e.g. model.json)')
        path = os.path.join(self.dir, str(name))
        if os.path.isfile(path):
            return path
        stem = os.path.splitext(str(name))[0]
        for alt in (stem + '.json', stem + '.pdmodel'):
            if os.path.isfile(os.path.join(self.dir, alt)):
                return os.path.join(self.dir, alt)
        raise DeployError(f'{self.path}: model: program file {path!r} does not exist '
                          f'(nor {stem}.json / {stem}.pdmodel)')

    def _file(self, d, key, required):
        name = d.get(key)
        if name is None:
            if required:
                raise DeployError(f'{self.path}: missing key {key!r}')
            return None
        path = os.path.join(self.dir, str(name))
        if not os.path.isfile(path):
            raise DeployError(f'{self.path}: {key}: file {path!r} does not exist')
        return path

    def _transforms(self, items):
        if not isinstance(items, list):
            raise DeployError(f'{self.path}: transforms: expected a list, got {items!r}')
        out = []
        for i, t in enumerate(items):
            if not isinstance(t, dict) or t.get('type') not in TRANSFORMS:
                raise DeployError(f'{self.path}: transforms.{i}: expected one of {", ".join(TRANSFORMS)}, '
                                  f'got {t!r}')
            args = {k: v for k, v in t.items() if k != 'type'}
            try:
                out.append(TRANSFORMS[t['type']](**args))
            except TypeError as e:
                raise DeployError(f'{self.path}: transforms.{i} ({t["type"]}): {e}') from None
        return out


# -- pre / post processing ------------------------------------------------------------

def read_image(path):
    """RGB float32 HxWx3 (0-255); DeployError if missing or not decodable."""
    if not os.path.isfile(path):
        raise DeployError(f'image file {path!r} does not exist')
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise DeployError(f'image file {path!r} cannot be decoded (corrupt or not an image)')
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32)


def preprocess(img, transforms):
    """HxWx3 RGB 0-255 -> CHW float32 network input."""
    for t in transforms:
        img = t(img)
    return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)


def postprocess(output, sizes, output_op):
    """Network output for a batch -> list of HxW uint8/int32 label maps at the original sizes.

    argmax output is resized with nearest neighbour; probabilities/logits are resized
    bilinearly first and then argmax-ed (what evaluation does with logits).
    """
    labels = []
    for i, (h, w) in enumerate(sizes):
        out = output[i]
        if output_op == 'argmax':
            lab = out.astype(np.int32)
            if lab.shape != (h, w):
                lab = cv2.resize(lab, (w, h), interpolation=cv2.INTER_NEAREST)
        else:
            chw = out.astype(np.float32)
            if chw.shape[1:] != (h, w):
                hwc = cv2.resize(np.ascontiguousarray(chw.transpose(1, 2, 0)), (w, h),
                                 interpolation=cv2.INTER_LINEAR)
                chw = hwc.reshape(h, w, -1).transpose(2, 0, 1)
            lab = chw.argmax(axis=0).astype(np.int32)
        labels.append(lab)
    return labels


def palette(n=256):
    """The PASCAL VOC color map PaddleSeg's pseudo-color masks use (class i -> RGB)."""
    pal = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


_PALETTE = palette()


def pseudo_color(label):
    """HxW class ids -> HxWx3 BGR image for cv2.imwrite."""
    rgb = _PALETTE[np.clip(label, 0, 255).astype(np.int64)]
    return rgb[:, :, ::-1]


# -- predictors -----------------------------------------------------------------------

class Predictor:
    """One exported model on one backend: ``run(batch NCHW float32) -> output ndarray``."""

    def __init__(self, cfg, backend='paddle', device='cpu', enable_mkldnn=True, cpu_threads=None,
                 use_trt=False, precision='fp32', min_subgraph_size=3, auto_tuned_shape_file=None,
                 trt_shape_range=None, batch_size=1, print_detail=False):
        self.cfg = cfg
        self.backend = backend
        self.device = device
        if backend not in ('paddle', 'onnxruntime'):
            raise DeployError(f'--backend: expected paddle or onnxruntime, got {backend!r}')
        if device not in ('cpu', 'gpu'):
            raise DeployError(f'--device: expected cpu or gpu, got {device!r}')
        if precision not in ('fp32', 'fp16', 'int8'):
            raise DeployError(f'--precision: expected fp32, fp16 or int8, got {precision!r}')
        if use_trt and device != 'gpu':
            raise DeployError('--use_trt needs --device gpu (TensorRT runs on NVIDIA GPUs)')
        if precision == 'fp16' and not use_trt:
            raise DeployError('--precision fp16 needs --use_trt on --device gpu')
        if backend == 'onnxruntime':
            self._init_ort(cpu_threads, device)
        else:
            self._init_paddle(device, enable_mkldnn, cpu_threads, use_trt, precision, min_subgraph_size,
                              auto_tuned_shape_file, trt_shape_range, batch_size, print_detail)

    # Paddle Inference ------------------------------------------------------------------
    def paddle_config(self, device, enable_mkldnn, cpu_threads, use_trt, precision, min_subgraph_size,
                      auto_tuned_shape_file, trt_shape_range, batch_size, print_detail):
        from paddle import inference
        cfg = self.cfg
        config = inference.Config(cfg.model_file, cfg.params_file)
        config.switch_ir_optim(True)  # the fusion passes (conv+bn+act, ...) are the speed
        # no enable_memory_optim(): with a PIR program (model.json) Paddle 3.2.2 fails to create
        # the predictor ("pass_result_info.h: Expected map.count(predictor_id)").
        if not print_detail:
            config.disable_glog_info()
        if device == 'cpu':
            config.disable_gpu()
            if cpu_threads:
                config.set_cpu_math_library_num_threads(int(cpu_threads))
            if enable_mkldnn:
                config.enable_mkldnn()
                # dynamic H, W: oneDNN caches primitives per input shape; bound the cache so a
                # stream of differently sized images does not grow memory without limit.
                config.set_mkldnn_cache_capacity(10)
                if precision == 'int8':
                    config.enable_mkldnn_int8()
            else:
                config.disable_mkldnn()
        else:
            config.enable_use_gpu(256, 0)
            if use_trt:
                mode = {'fp32': inference.PrecisionType.Float32, 'fp16': inference.PrecisionType.Half,
                        'int8': inference.PrecisionType.Int8}[precision]
                config.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=batch_size,
                                              min_subgraph_size=min_subgraph_size, precision_mode=mode,
                                              use_static=False, use_calib_mode=(precision == 'int8'))
                if auto_tuned_shape_file and os.path.isfile(auto_tuned_shape_file):
                    config.enable_tuned_tensorrt_dynamic_shape(auto_tuned_shape_file, True)
                else:
                    lo, opt, hi = trt_shape_range or self.default_trt_shapes(batch_size)
                    config.set_trt_dynamic_shape_info({'x': lo}, {'x': hi}, {'x': opt})
        return config

    def default_trt_shapes(self, batch_size):
        """min / opt / max input shapes for TensorRT's dynamic shape mode."""
        n, _, h, w = self.cfg.input_shape
        n = n if n > 0 else batch_size
        if h > 0 and w > 0:
            return [n, 3, h, w], [n, 3, h, w], [n, 3, h, w]
        return [1, 3, 64, 64], [n, 3, 512, 1024], [n, 3, 2048, 2048]

    def _init_paddle(self, device, enable_mkldnn, cpu_threads, use_trt, precision, min_subgraph_size,
                     auto_tuned_shape_file, trt_shape_range, batch_size, print_detail):
        from paddle import inference
        args = (device, enable_mkldnn, cpu_threads, use_trt, precision, min_subgraph_size,
                auto_tuned_shape_file, trt_shape_range, batch_size, print_detail)
        config = self.paddle_config(*args)
        try:
            self.predictor = inference.create_predictor(config)
        except Exception as e:
            raise DeployError(f'{self.cfg.path}: Paddle Inference cannot load {self.cfg.model_file} + '
                              f'{self.cfg.params_file}: {str(e).strip().splitlines()[-1] if str(e).strip() else e}') from None
        self.input_name = self.predictor.get_input_names()[0]
        self.output_name = self.predictor.get_output_names()[0]

    def _run_paddle(self, batch):
        h = self.predictor.get_input_handle(self.input_name)
        h.reshape(batch.shape)
        h.copy_from_cpu(batch)
        self.predictor.run()
        return self.predictor.get_output_handle(self.output_name).copy_to_cpu()

    # ONNX Runtime ----------------------------------------------------------------------
    def _init_ort(self, cpu_threads, device):
        try:
            import onnxruntime as ort
        except ImportError:
            raise DeployError('--backend onnxruntime needs onnxruntime: pip install onnxruntime') from None
        if self.cfg.onnx_file is None:
            raise DeployError(f'{self.cfg.path}: no "onnx" entry; export with tools/export.py --format onnx')
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if cpu_threads:
            opts.intra_op_num_threads = int(cpu_threads)
            opts.inter_op_num_threads = 1
        providers = ['CUDAExecutionProvider', 'CPUExecutionProvider'] if device == 'gpu' else ['CPUExecutionProvider']
        try:
            self.session = ort.InferenceSession(self.cfg.onnx_file, opts, providers=providers)
        except Exception as e:
            raise DeployError(f'{self.cfg.path}: onnxruntime cannot load {self.cfg.onnx_file}: {e}') from None
        self.input_name = self.session.get_inputs()[0].name

    def run(self, batch):
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self.check_shape(batch.shape)
        if self.backend == 'onnxruntime':
            return self.session.run(None, {self.input_name: batch})[0]
        return self._run_paddle(batch)

    def check_shape(self, shape):
        want = self.cfg.input_shape
        for axis, (got, exp) in enumerate(zip(shape, want)):
            if exp != -1 and got != exp:
                raise DeployError(f'{self.cfg.path}: input is {list(shape)} but the model was exported for '
                                  f'input_shape {want} (dimension {axis}); re-export with a dynamic shape '
                                  'or fit the preprocessing / --batch_size to it')


# -- the pipeline ---------------------------------------------------------------------

def list_images(image_path):
    if os.path.isdir(image_path):
        files = sorted(os.path.join(root, f) for root, _, names in os.walk(image_path) for f in names
                       if f.lower().endswith(IMAGE_EXTS))
        if not files:
            raise DeployError(f'--image_path: no images ({", ".join(IMAGE_EXTS)}) under {image_path!r}')
        return files
    if not os.path.exists(image_path):
        raise DeployError(f'--image_path: {image_path!r} does not exist')
    return [image_path]


class Timer:
    def __init__(self):
        self.ms = {'preprocess': [], 'inference': [], 'postprocess': []}

    def add(self, stage, seconds, n_images):
        self.ms[stage].extend([seconds * 1000.0 / n_images] * n_images)


def _batches(items, size):
    """Consecutive images with the same preprocessed shape, at most ``size`` per batch."""
    batch = []
    for item in items:
        if batch and (len(batch) == size or batch[-1][1].shape != item[1].shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def infer_images(predictor, files, batch_size=1, timer=None):
    """Run the whole pipeline on files; returns [(path, label HxW)]; times each stage."""
    results = []
    cfg = predictor.cfg
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        t0 = time.perf_counter()
        items = []
        for p in chunk:
            img = read_image(p)
            items.append((p, preprocess(img, cfg.transforms), img.shape[:2]))
        t1 = time.perf_counter()
        if timer:
            timer.add('preprocess', t1 - t0, len(chunk))
        for batch in _batches(items, batch_size):
            t1 = time.perf_counter()
            out = predictor.run(np.stack([b[1] for b in batch]))
            t2 = time.perf_counter()
            labels = postprocess(out, [b[2] for b in batch], cfg.output_op)
            t3 = time.perf_counter()
            if timer:
                timer.add('inference', t2 - t1, len(batch))
                timer.add('postprocess', t3 - t2, len(batch))
            results.extend((b[0], lab) for b, lab in zip(batch, labels))
    return results


def save_masks(results, save_dir, image_root=None):
    os.makedirs(save_dir, exist_ok=True)
    written = []
    for path, label in results:
        rel = os.path.relpath(path, image_root) if image_root else os.path.basename(path)
        dst = os.path.join(save_dir, os.path.splitext(rel)[0] + '.png')
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if not cv2.imwrite(dst, pseudo_color(label)):
            raise DeployError(f'--save_dir: cannot write {dst!r}')
        written.append(dst)
    return written


def peak_memory_mb():
    """Peak resident memory of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == 'darwin' else rss / 1024.0


def gpu_memory_mb(device):
    if device != 'gpu':
        return None
    try:
        import paddle
        return paddle.device.cuda.max_memory_reserved() / (1024.0 * 1024.0)
    except Exception:
        return None


def summarize(timer, wall_seconds, n_images):
    stats = {}
    for stage, values in timer.ms.items():
        v = np.asarray(values, dtype=np.float64)
        stats[stage] = {'mean': float(v.mean()) if v.size else 0.0,
                        'p50': float(np.percentile(v, 50)) if v.size else 0.0,
                        'p90': float(np.percentile(v, 90)) if v.size else 0.0}
    stats['images_per_second'] = n_images / wall_seconds if wall_seconds > 0 else 0.0
    return stats


def benchmark(predictor, files, batch_size=1, warmup=5, repeats=20, device='cpu'):
    """Warm-up passes, then ``repeats`` timed passes over the images; returns a stats dict."""
    if warmup < 0 or repeats < 1:
        raise DeployError(f'--warmup must be >= 0 and --repeats >= 1, got {warmup} / {repeats}')
    for _ in range(warmup):
        infer_images(predictor, files[:batch_size], batch_size)
    timer = Timer()
    t0 = time.perf_counter()
    for _ in range(repeats):
        infer_images(predictor, files, batch_size, timer)
    wall = time.perf_counter() - t0
    stats = summarize(timer, wall, repeats * len(files))
    stats.update({'peak_rss_mb': peak_memory_mb(), 'gpu_memory_mb': gpu_memory_mb(device),
                  'images': len(files), 'warmup': warmup, 'repeats': repeats, 'batch_size': batch_size})
    return stats


def format_table(stats, title):
    lines = [title, f'{"stage":<12} {"mean ms":>9} {"p50 ms":>9} {"p90 ms":>9}']
    for stage in ('preprocess', 'inference', 'postprocess'):
        s = stats[stage]
        lines.append(f'{stage:<12} {s["mean"]:>9.2f} {s["p50"]:>9.2f} {s["p90"]:>9.2f}')
    lines.append(f'images/s: {stats["images_per_second"]:.2f}   peak RSS: {stats["peak_rss_mb"]:.0f} MB'
                 + (f'   GPU memory: {stats["gpu_memory_mb"]:.0f} MB' if stats.get('gpu_memory_mb') else ''))
    return '\n'.join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Segment images with an exported model (Paddle Inference / ONNX Runtime).')
    p.add_argument('--config', required=True, help='deploy.yaml written by tools/export.py')
    p.add_argument('--image_path', required=True, help='an image or a folder of images')
    p.add_argument('--save_dir', default='./output', help='where the pseudo-color masks go')
    p.add_argument('--device', default='cpu', choices=['cpu', 'gpu'])
    p.add_argument('--backend', default='paddle', choices=['paddle', 'onnxruntime'])
    p.add_argument('--batch_size', type=int, default=1)
    p.add_argument('--enable_mkldnn', nargs='?', const=True, default=True, type=_bool,
                   help='oneDNN on CPU (default on; --enable_mkldnn False turns it off)')
    p.add_argument('--cpu_threads', type=int, default=None, help='math library threads (default: all cores)')
    p.add_argument('--use_trt', nargs='?', const=True, default=False, type=_bool, help='TensorRT (gpu)')
    p.add_argument('--precision', default='fp32', choices=['fp32', 'fp16', 'int8'])
    p.add_argument('--min_subgraph_size', type=int, default=3, help='TensorRT: smallest subgraph to convert')
    p.add_argument('--auto_tuned_shape_file', default=None,
                   help='TensorRT: tuned dynamic shape file (collected with --collect_shape_range first)')
    p.add_argument('--collect_shape_range', action='store_true',
                   help='TensorRT: run the images without TRT and record tensor shape ranges into '
                        '--auto_tuned_shape_file')
    p.add_argument('--benchmark', nargs='?', const=True, default=False, type=_bool,
                   help='time preprocess / inference / postprocess')
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--repeats', type=int, default=20)
    p.add_argument('--json', default=None, help='benchmark: also write the stats as JSON here')
    p.add_argument('--print_detail', action='store_true', help='Paddle Inference logs')
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error('--batch_size must be >= 1')
    if args.cpu_threads is not None and args.cpu_threads < 1:
        p.error('--cpu_threads must be >= 1')
    return args


def _bool(text):
    if isinstance(text, bool):
        return text
    low = str(text).strip().lower()
    if low in ('1', 'true', 'yes', 'on'):
        return True
    if low in ('0', 'false', 'no', 'off', 'none', 'null'):
        return False
    raise argparse.ArgumentTypeError(f'expected True or False, got {text!r}')


def collect_shape_range(cfg, args, files):
    """TensorRT dynamic shapes from real data: run once with shape collection on."""
    if not args.auto_tuned_shape_file:
        raise DeployError('--collect_shape_range needs --auto_tuned_shape_file PATH')
    from paddle import inference
    pred = Predictor.__new__(Predictor)
    pred.cfg = cfg
    config = inference.Config(cfg.model_file, cfg.params_file)
    config.enable_use_gpu(256, 0) if args.device == 'gpu' else config.disable_gpu()
    config.collect_shape_range_info(args.auto_tuned_shape_file)
    pred.backend, pred.device = 'paddle', args.device
    pred.predictor = inference.create_predictor(config)
    pred.input_name = pred.predictor.get_input_names()[0]
    pred.output_name = pred.predictor.get_output_names()[0]
    infer_images(pred, files, args.batch_size)
    print(f'collected tensor shape ranges into {args.auto_tuned_shape_file}')


def main(argv=None):
    args = parse_args(argv)
    cfg = DeployConfig(args.config)
    files = list_images(args.image_path)
    for f in files:  # fail on a non-image before loading the model (header check only)
        if not cv2.haveImageReader(f):
            raise DeployError(f'image file {f!r} cannot be decoded (corrupt or not an image)')
    if args.collect_shape_range:
        collect_shape_range(cfg, args, files)
    predictor = Predictor(cfg, backend=args.backend, device=args.device, enable_mkldnn=args.enable_mkldnn,
                          cpu_threads=args.cpu_threads, use_trt=args.use_trt, precision=args.precision,
                          min_subgraph_size=args.min_subgraph_size,
                          auto_tuned_shape_file=args.auto_tuned_shape_file, batch_size=args.batch_size,
                          print_detail=args.print_detail)
    results = infer_images(predictor, files, args.batch_size)
    root = args.image_path if os.path.isdir(args.image_path) else None
    written = save_masks(results, args.save_dir, root)
    print(f'saved {len(written)} mask(s) to {args.save_dir}')
    if args.benchmark:
        stats = benchmark(predictor, files, args.batch_size, args.warmup, args.repeats, args.device)
        stats.update({'backend': args.backend, 'device': args.device, 'enable_mkldnn': bool(args.enable_mkldnn),
                      'cpu_threads': args.cpu_threads, 'precision': args.precision, 'config': args.config})
        title = (f'benchmark: {args.backend} on {args.device}'
                 + (f', oneDNN {"on" if args.enable_mkldnn else "off"}, {args.cpu_threads or "all"} threads'
                    if args.device == 'cpu' and args.backend == 'paddle' else '')
                 + f', batch {args.batch_size}, {len(files)} image(s) x {args.repeats}')
        print(format_table(stats, title))
        if args.json:
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            with open(args.json, 'w', encoding='utf-8') as f:
                json.dump(stats, f, indent=2)
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except DeployError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
