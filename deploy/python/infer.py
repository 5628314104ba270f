"""Serve an exported segmentation model with Paddle Inference, ONNX Runtime or OpenVINO.

    python deploy/python/infer.py --config output/export/deploy.yaml --image_path img.png \
        [--backend paddle|onnxruntime|openvino] [--precision fp32|bf16|int8|fp16] \
        [--device cpu|gpu] [--cpu_threads N] [--batch_size N] [--save_dir S] [--save_overlay] \
        [--benchmark [--warmup W --repeats K --json out.json]]
    python deploy/python/infer.py --config output/export/deploy.yaml --dataset_config configs/x.yml
        # mIoU / aAcc of the exported model on the config's val set (needs the zoo library)

This file is self-contained on purpose: serving images imports only paddle (or onnxruntime /
openvino), numpy, opencv, yaml and Pillow, never the training library, so a deployment machine
needs nothing but this script and the folder ``tools/export.py`` wrote. The preprocessing ops
re-implement the val transforms of ``zoo/datasets/transforms.py`` exactly (same sizes, same
rounding, same OpenCV interpolation; tests compare them), so deployed and evaluated predictions
agree. Only ``--dataset_config`` imports ``zoo`` (to read a dataset's labels and to score with
the metric code ``tools/val.py`` uses).
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
BACKENDS = ('paddle', 'onnxruntime', 'openvino')
PRECISIONS = ('fp32', 'bf16', 'int8', 'fp16')
OVERLAY_ALPHA = 0.4  # PaddleSeg's added_prediction: 0.6 image + 0.4 mask (tools/predict.py too)


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


def voc_palette(n=256):
    """The PASCAL VOC color map (class i -> RGB): PaddleSeg's and tools/predict.py's default."""
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
        self.bf16_model_file = self._file(d, 'bf16_model', required=False)
        self.bf16_params_file = self._file(d, 'bf16_params', required=False) or self.params_file
        self.onnx_file = self._file(d, 'onnx', required=False)
        self.onnx_int8_file = self._file(d, 'onnx_int8', required=False)
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
        self.num_classes = d.get('num_classes')
        self.class_names = d.get('class_names')
        self.palette = self._palette(d.get('palette'))
        self.config = d.get('config')
        self._verify(d.get('sha256') or {})

    def _palette(self, given):
        """``[256, 3]`` uint8: deploy.yaml's palette (one color per class, the colors
        tools/predict.py draws) and black past it, as predict.py's PNGs; the VOC colors for a
        deploy.yaml without one."""
        if given is None:
            return voc_palette(256)
        arr = np.asarray(given)
        if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] > 256 or arr.size and (arr.min() < 0 or arr.max() > 255):
            raise DeployError(f'{self.path}: palette: expected up to 256 [r, g, b] triples of 0-255, got shape {arr.shape}')
        pal = np.zeros((256, 3), dtype=np.uint8)
        pal[:len(arr)] = arr.astype(np.uint8)
        return pal

    def _verify(self, digests):
        """The files must be the ones this deploy.yaml was written with (tools/export.py records
        their SHA-256): Paddle Inference happily runs a params file of another model."""
        if not isinstance(digests, dict):
            raise DeployError(f'{self.path}: sha256: expected a mapping of file name to digest')
        files = (self.model_file, self.params_file, self.bf16_model_file, self.bf16_params_file, self.onnx_file,
                 self.onnx_int8_file)
        for path in dict.fromkeys(p for p in files if p):
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


def check_classes(output, cfg):
    """The network's output must fit deploy.yaml's ``num_classes``: a params file of another
    model (a deploy.yaml without ``sha256``) otherwise gives class ids the model does not have.
    Checked on the first batch of a predictor (its files do not change afterwards)."""
    k = cfg.num_classes
    if k is None:
        return
    k = int(k)
    if cfg.output_op == 'argmax':
        top = int(np.max(output)) if np.size(output) else 0
        if top >= k:
            raise DeployError(f'{cfg.path}: the model predicted class {top} but num_classes is {k}: the program or '
                              'params are not the ones this deploy.yaml describes; re-export or copy the whole folder')
    elif np.ndim(output) != 4 or np.shape(output)[1] != k:
        raise DeployError(f'{cfg.path}: the model gives {np.shape(output)} ({cfg.output_op}) but num_classes is {k}: '
                          'the program or params are not the ones this deploy.yaml describes')


def postprocess(output, sizes, output_op):
    """Network output for a batch -> list of HxW int32 label maps at the original sizes.

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


def colorize(label, palette):
    """HxW class ids -> HxWx3 RGB; ids outside the palette (e.g. 255) black, as tools/predict.py."""
    label = np.asarray(label)
    valid = (label >= 0) & (label < len(palette))
    out = np.zeros(label.shape + (3,), dtype=np.uint8)
    out[valid] = palette[label[valid]]
    return out


def save_palette_png(path, label, palette):
    """The class ids as a palette-mode PNG (pixel value = class id, shown in ``palette``): the
    file tools/predict.py writes. Without Pillow, an RGB PNG of the same colors."""
    try:
        from PIL import Image
    except ImportError:
        return cv2.imwrite(path, colorize(label, palette)[:, :, ::-1])
    ids = np.asarray(label).astype(np.int64)
    ids = np.ascontiguousarray(np.where((ids < 0) | (ids > 255), 255, ids).astype(np.uint8))
    im = Image.frombytes('P', (ids.shape[1], ids.shape[0]), ids.tobytes())
    im.putpalette(np.asarray(palette, dtype=np.uint8)[:256].reshape(-1).tolist())
    try:
        im.save(path)
    except OSError:
        return False
    return True


def overlay(img, color_mask, alpha=OVERLAY_ALPHA):
    """``(1 - alpha) * img + alpha * mask``, rounded: tools/predict.py's added_prediction."""
    img = np.clip(np.asarray(img, dtype=np.float32), 0, 255)
    return np.clip((1.0 - alpha) * img + alpha * color_mask.astype(np.float32) + 0.5, 0, 255).astype(np.uint8)


# -- CPU capabilities -----------------------------------------------------------------

def cpu_flags():
    """The CPU feature flags (Linux /proc/cpuinfo); empty where unknown."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8', errors='replace') as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.split(':', 1)[1].split())
    except OSError:
        pass
    return set()


def has_bf16(flags=None):
    """bfloat16 arithmetic in hardware: AVX-512 BF16 (Cooper Lake, Zen 4) or AMX (Sapphire Rapids)."""
    flags = cpu_flags() if flags is None else flags
    return bool({'avx512_bf16', 'amx_bf16'} & flags)


def unsupported(backend, device, precision, enable_mkldnn=True):
    """Why this machine / build cannot run ``backend`` x ``device`` x ``precision`` (one line), or
    None. The export's files are checked separately (``Predictor``)."""
    if precision == 'fp16' and device != 'gpu':
        return 'fp16 runs on GPUs here; on CPU use --precision bf16 (where the CPU has it) or int8'
    if precision == 'bf16':
        if device != 'cpu':
            return 'bf16 is a CPU path here; on GPU use --precision fp16'
        if backend == 'onnxruntime':
            return 'ONNX Runtime has no bf16 CPU kernels; use --backend paddle or openvino'
        if not has_bf16():
            return ('this CPU has no bfloat16 instructions (needs avx512_bf16 or amx_bf16 in /proc/cpuinfo flags); '
                    'use fp32 or int8')
        if backend == 'paddle' and not enable_mkldnn:
            return 'Paddle Inference runs bf16 through oneDNN; drop --enable_mkldnn False'
    if precision == 'int8' and backend == 'paddle':
        return ('Paddle Inference 3.2.2 cannot run our int8 models (see docs/benchmark.md); tools/quant.py writes '
                'model_int8.onnx: use --backend onnxruntime or openvino')
    if backend == 'openvino' and device != 'cpu':
        return 'OpenVINO is used on CPU here'
    return None


def default_threads():
    """The cores this process may run on (what ``--cpu_threads`` defaults to)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# -- predictors -----------------------------------------------------------------------

class Predictor:
    """One exported model on one backend and precision: ``run(batch NCHW float32) -> ndarray``.

    | backend     | fp32          | bf16 (CPU)                 | int8                     | fp16 (GPU)     |
    | paddle      | model.json    | oneDNN bf16 (model_bf16)   | -                        | with/without TRT |
    | onnxruntime | model.onnx    | -                          | model_int8.onnx (QDQ)    | CUDA EP        |
    | openvino    | model.onnx    | inference precision hint   | model_int8.onnx (QDQ)    | -              |
    """

    def __init__(self, cfg, backend='paddle', device='cpu', enable_mkldnn=True, cpu_threads=None,
                 use_trt=False, precision='fp32', min_subgraph_size=3, auto_tuned_shape_file=None,
                 trt_shape_range=None, batch_size=1, print_detail=False, trt_cache=True):
        self.cfg = cfg
        self.backend = backend
        self.device = device
        self.precision = precision
        self.threads = int(cpu_threads) if cpu_threads else default_threads()
        if backend not in BACKENDS:
            raise DeployError(f'--backend: expected one of {", ".join(BACKENDS)}, got {backend!r}')
        if device not in ('cpu', 'gpu'):
            raise DeployError(f'--device: expected cpu or gpu, got {device!r}')
        if precision not in PRECISIONS:
            raise DeployError(f'--precision: expected one of {", ".join(PRECISIONS)}, got {precision!r}')
        if device == 'gpu' and backend == 'paddle':
            import paddle
            if not paddle.device.is_compiled_with_cuda():
                raise DeployError('--device gpu: this Paddle build has no CUDA support '
                                  '(install a GPU build of paddlepaddle or use --device cpu)')
        if use_trt and (device != 'gpu' or backend != 'paddle'):
            raise DeployError('--use_trt needs --backend paddle --device gpu (TensorRT runs on NVIDIA GPUs)')
        self._check_precision(backend, device, precision, enable_mkldnn)
        if backend == 'onnxruntime':
            self._init_ort(device)
        elif backend == 'openvino':
            self._init_openvino()
        else:
            self._init_paddle(device, enable_mkldnn, use_trt, min_subgraph_size, auto_tuned_shape_file,
                              trt_shape_range, batch_size, print_detail, trt_cache)

    def _check_precision(self, backend, device, precision, enable_mkldnn):
        """One line naming what is missing when a backend / device / CPU cannot run ``precision``."""
        why = unsupported(backend, device, precision, enable_mkldnn)
        if why:
            raise DeployError(f'--backend {backend} --device {device} --precision {precision}: {why}')
        if precision == 'int8' and self.cfg.onnx_int8_file is None:
            raise DeployError(f'{self.cfg.path}: no "onnx_int8" entry; write the int8 model with tools/quant.py')
        if backend in ('onnxruntime', 'openvino') and precision != 'int8' and self.cfg.onnx_file is None:
            raise DeployError(f'{self.cfg.path}: no "onnx" entry; export with tools/export.py --format onnx')

    # Paddle Inference ------------------------------------------------------------------
    def paddle_config(self, device, enable_mkldnn, use_trt, min_subgraph_size, auto_tuned_shape_file,
                      trt_shape_range, batch_size, print_detail, trt_cache=True):
        from paddle import inference
        cfg = self.cfg
        bf16 = self.precision == 'bf16'
        # bf16 runs the program traced with portable adaptive pooling (oneDNN has no bf16 kernel
        # for adaptive pool2d); tools/export.py writes it only for models that need it
        program = cfg.bf16_model_file if bf16 and cfg.bf16_model_file else cfg.model_file
        params = cfg.bf16_params_file if bf16 and cfg.bf16_model_file else cfg.params_file
        config = inference.Config(program, params)
        config.switch_ir_optim(True)  # the fusion passes (conv+bn+act, ...) are the speed
        # no enable_memory_optim(): with a PIR program (model.json) Paddle 3.2.2 fails to create
        # the predictor ("pass_result_info.h: Expected map.count(predictor_id)").
        if not print_detail:
            config.disable_glog_info()
        if device == 'cpu':
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(self.threads)
            if enable_mkldnn:
                config.enable_mkldnn()
                # dynamic H, W: oneDNN caches primitives per input shape; bound the cache so a
                # stream of differently sized images does not grow memory without limit.
                config.set_mkldnn_cache_capacity(10)
                if bf16:
                    config.enable_mkldnn_bfloat16()
            else:
                config.disable_mkldnn()
            return config
        gpu_precision = {'fp32': inference.PrecisionType.Float32, 'fp16': inference.PrecisionType.Half}[self.precision]
        if use_trt:
            config.enable_use_gpu(256, 0)
            # use_static: the serialized engines are cached beside the export (_opt_cache/) and
            # reused by the next start instead of being rebuilt (minutes for large models)
            if trt_cache:
                config.set_optim_cache_dir(os.path.join(cfg.dir, '_opt_cache'))
            config.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=batch_size,
                                          min_subgraph_size=min_subgraph_size, precision_mode=gpu_precision,
                                          use_static=bool(trt_cache), use_calib_mode=False)
            if auto_tuned_shape_file and os.path.isfile(auto_tuned_shape_file):
                config.enable_tuned_tensorrt_dynamic_shape(auto_tuned_shape_file, True)
            else:
                lo, opt, hi = trt_shape_range or self.default_trt_shapes(batch_size)
                config.set_trt_dynamic_shape_info({'x': lo}, {'x': hi}, {'x': opt})
        else:
            # fp16 without TensorRT: Paddle's own GPU kernels in half precision
            config.enable_use_gpu(256, 0, gpu_precision)
        return config

    def default_trt_shapes(self, batch_size):
        """min / opt / max input shapes for TensorRT's dynamic shape mode."""
        n, _, h, w = self.cfg.input_shape
        n = n if n > 0 else batch_size
        if h > 0 and w > 0:
            return [n, 3, h, w], [n, 3, h, w], [n, 3, h, w]
        return [1, 3, 64, 64], [n, 3, 512, 1024], [n, 3, 2048, 2048]

    def _init_paddle(self, *args):
        from paddle import inference
        config = self.paddle_config(*args)
        try:
            self.predictor = inference.create_predictor(config)
        except Exception as e:
            raise DeployError(f'{self.cfg.path}: Paddle Inference cannot load {self.cfg.model_file} + '
                              f'{self.cfg.params_file}: {_last_line(e)}') from None
        self.input_name = self.predictor.get_input_names()[0]
        self.output_name = self.predictor.get_output_names()[0]

    def _run_paddle(self, batch):
        h = self.predictor.get_input_handle(self.input_name)
        h.reshape(batch.shape)
        h.copy_from_cpu(batch)
        self.predictor.run()
        return self.predictor.get_output_handle(self.output_name).copy_to_cpu()

    # ONNX Runtime ----------------------------------------------------------------------
    def _onnx_file(self):
        return self.cfg.onnx_int8_file if self.precision == 'int8' else self.cfg.onnx_file

    def _init_ort(self, device):
        try:
            import onnxruntime as ort
        except ImportError:
            raise DeployError('--backend onnxruntime needs onnxruntime: pip install onnxruntime '
                              '(or pip install paddle-seg-zoo[onnx])') from None
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        # warnings only from errors up: at session creation ONNX Runtime logs one "Removing
        # initializer" line per constant its optimizer folds away (65 for Fast-SCNN), all harmless
        opts.log_severity_level = 3
        providers = ['CUDAExecutionProvider', 'CPUExecutionProvider'] if device == 'gpu' else ['CPUExecutionProvider']
        if device == 'gpu' and 'CUDAExecutionProvider' not in ort.get_available_providers():
            raise DeployError('--device gpu: this onnxruntime has no CUDA provider '
                              '(pip install onnxruntime-gpu, or use --device cpu)')
        try:
            self.session = ort.InferenceSession(self._onnx_file(), opts, providers=providers)
        except Exception as e:
            raise DeployError(f'{self.cfg.path}: onnxruntime cannot load {self._onnx_file()}: {_last_line(e)}') from None
        self.input_name = self.session.get_inputs()[0].name

    # OpenVINO --------------------------------------------------------------------------
    def _init_openvino(self):
        try:
            import openvino as ov
        except ImportError:
            raise DeployError('--backend openvino needs openvino: pip install openvino '
                              '(or pip install paddle-seg-zoo[openvino])') from None
        core = ov.Core()
        # OpenVINO reads the ONNX export (it cannot read Paddle 3's PIR model.json). Its CPU
        # plugin picks bf16 by itself on CPUs with AMX: fp32 is asked for explicitly.
        hint = 'bf16' if self.precision == 'bf16' else 'f32'
        props = {'INFERENCE_NUM_THREADS': self.threads, 'PERFORMANCE_HINT': 'LATENCY',
                 'INFERENCE_PRECISION_HINT': hint}
        try:
            self.compiled = core.compile_model(self._onnx_file(), 'CPU', props)
        except Exception as e:
            raise DeployError(f'{self.cfg.path}: OpenVINO cannot load {self._onnx_file()}: {_last_line(e)}') from None
        self.request = self.compiled.create_infer_request()
        self.ov_output = self.compiled.output(0)

    def run(self, batch):
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        self.check_shape(batch.shape)
        if self.backend == 'onnxruntime':
            return self.session.run(None, {self.input_name: batch})[0]
        if self.backend == 'openvino':
            return np.array(self.request.infer({0: batch})[self.ov_output])
        return self._run_paddle(batch)

    def check_shape(self, shape):
        want = self.cfg.input_shape
        for axis, (got, exp) in enumerate(zip(shape, want)):
            if exp != -1 and got != exp:
                raise DeployError(f'{self.cfg.path}: input is {list(shape)} but the model was exported for '
                                  f'input_shape {want} (dimension {axis}); re-export with a dynamic shape '
                                  'or fit the preprocessing / --batch_size to it')

    def describe(self):
        return (f'{self.backend} {self.precision} on {self.device}'
                + (f', {self.threads} threads' if self.device == 'cpu' else ''))


def _last_line(exc):
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if 'Error' in ln or 'error' in ln]
    return (errors or lines or [type(exc).__name__])[-1][:400]


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


def predict_images(predictor, images, batch_size=1, timer=None):
    """``images``: [(key, RGB float32 HxWx3)]; yields (key, label HxW int32 at the image size)."""
    cfg = predictor.cfg
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        t0 = time.perf_counter()
        items = [(key, preprocess(img, cfg.transforms), img.shape[:2]) for key, img in chunk]
        if timer:
            timer.add('preprocess', time.perf_counter() - t0, len(chunk))
        for batch in _batches(items, batch_size):
            t1 = time.perf_counter()
            out = predictor.run(np.stack([b[1] for b in batch]))
            t2 = time.perf_counter()
            if not getattr(predictor, 'classes_checked', False):
                check_classes(out, cfg)
                predictor.classes_checked = True
            labels = postprocess(out, [b[2] for b in batch], cfg.output_op)
            t3 = time.perf_counter()
            if timer:
                timer.add('inference', t2 - t1, len(batch))
                timer.add('postprocess', t3 - t2, len(batch))
            yield from ((b[0], lab) for b, lab in zip(batch, labels))


def infer_images(predictor, files, batch_size=1, timer=None):
    """Run the whole pipeline on files; returns [(path, label HxW)]; times each stage
    (reading the files counts as preprocessing)."""
    results = []
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        t0 = time.perf_counter()
        images = [(p, read_image(p)) for p in chunk]
        if timer:
            timer.add('preprocess', time.perf_counter() - t0, len(chunk))
        results.extend(predict_images(predictor, images, batch_size, timer))
    return results


def _relative_name(path, image_root):
    return os.path.relpath(path, image_root) if image_root else os.path.basename(path)


def save_masks(results, save_dir, palette, image_root=None):
    """``<save_dir>/<name>.png`` palette PNGs (pixel = class id); returns the paths written."""
    written = []
    for path, label in results:
        dst = os.path.join(save_dir, os.path.splitext(_relative_name(path, image_root))[0] + '.png')
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if not save_palette_png(dst, label, palette):
            raise DeployError(f'--save_dir: cannot write {dst!r}')
        written.append(dst)
    return written


def save_overlays(results, save_dir, palette, image_root=None):
    """``<save_dir>/added_prediction/<name>.<the input's extension>``: image blended with the mask."""
    written = []
    for path, label in results:
        rel = _relative_name(path, image_root)
        ext = os.path.splitext(rel)[1].lower()
        dst = os.path.join(save_dir, 'added_prediction', os.path.splitext(rel)[0] + (ext or '.png'))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        blended = overlay(read_image(path), colorize(label, palette))
        params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in ('.jpg', '.jpeg') else []
        if not cv2.imwrite(dst, blended[:, :, ::-1], params):
            raise DeployError(f'--save_dir: cannot write {dst!r}')
        written.append(dst)
    return written


def peak_memory_mb():
    """Peak resident memory of this process: VmHWM on Linux (ru_maxrss would include the peak of
    the parent that forked it: Linux keeps it across exec), else ru_maxrss (KiB; bytes on macOS)."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
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


# -- benchmark worker (tools/benchmark.py) --------------------------------------------

def serve(run, labels, describe='', stdin=None, stdout=None):
    """Answer tools/benchmark.py's commands on stdin, one JSON line each on stdout (prefixed
    ``@@``), so one driver can interleave timed rounds of paths that each live in their own
    process: ``run K`` (K timed calls of ``run()``: wall and CPU ms), ``save PATH`` (the class ids
    ``labels(output)`` of the last call as .npy), ``stats`` (peak resident memory), ``quit``.
    The one implementation of the protocol: the dygraph and PyTorch workers import it too."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    last = run()  # first run: primitives created, caches filled

    def reply(obj):
        stdout.write('@@ ' + json.dumps(obj) + '\n')
        stdout.flush()

    reply({'ready': True, 'describe': describe})
    for line in stdin:
        cmd, _, arg = line.strip().partition(' ')
        if cmd == 'run':
            wall, cpu = [], []
            for _ in range(max(int(arg or 1), 1)):
                c0, t0 = time.process_time(), time.perf_counter()
                last = run()
                wall.append((time.perf_counter() - t0) * 1000.0)
                cpu.append((time.process_time() - c0) * 1000.0)
            reply({'wall_ms': wall, 'cpu_ms': cpu})
        elif cmd == 'save':
            np.save(arg, np.asarray(labels(last)).astype(np.int32))
            reply({'saved': arg})
        elif cmd == 'stats':
            reply({'peak_rss_mb': peak_memory_mb()})
        elif cmd == 'quit':
            reply({'bye': True})
            return


# -- scoring on a dataset -------------------------------------------------------------

def evaluate_dataset(predictor, dataset_config, opts=None, limit=None):
    """mIoU / aAcc / mAcc of the exported model on ``dataset_config``'s val set, scored by the
    zoo's own metric code (the numbers tools/val.py prints for the same predictions)."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if os.path.isfile(os.path.join(repo, 'zoo', '__init__.py')) and repo not in sys.path:
        sys.path.append(repo)  # run from a source checkout: the zoo beside deploy/
    try:
        from zoo.engine.score import score_predictions
        from zoo.utils.config import Config
        import zoo
    except ImportError as e:
        raise DeployError(f'--dataset_config needs the zoo library (pip install paddle-seg-zoo, or run from '
                          f'the repository): {e}') from None
    try:
        cfg = dataset_config if hasattr(dataset_config, 'dic') else Config(dataset_config, opts=opts or [])
        dataset = zoo.build_dataset(cfg, 'val')
    except Exception as e:  # ZooError subclasses carry one line; anything else: its last line
        raise DeployError(f'--dataset_config {dataset_config}: {_last_line(e)}') from None
    if predictor.cfg.num_classes is not None and int(predictor.cfg.num_classes) != int(dataset.num_classes):
        raise DeployError(f'--dataset_config {dataset_config}: the val set has {dataset.num_classes} classes, '
                          f'the exported model {predictor.cfg.num_classes}')

    def predict(img):
        return next(predict_images(predictor, [(None, img)]))[1]

    return score_predictions(dataset, predict, limit=limit)


# -- command line ---------------------------------------------------------------------

class _ArgumentParser(argparse.ArgumentParser):
    """One-line flag errors (``error: ...``, exit 2), as the other errors here."""

    def error(self, message):
        self.exit(2, f'error: {message} (see {self.prog} --help)\n')


def parse_args(argv=None):
    p = _ArgumentParser(description='Segment images with an exported model '
                                            '(Paddle Inference / ONNX Runtime / OpenVINO).')
    p.add_argument('--config', required=True, help='deploy.yaml written by tools/export.py')
    p.add_argument('--image_path', default=None, help='an image or a folder of images')
    p.add_argument('--dataset_config', default=None,
                   help='score the model on this training config\'s val set (mIoU, aAcc) instead of --image_path')
    p.add_argument('--opts', nargs='+', default=[], help='--dataset_config overrides: key.subkey=value ...')
    p.add_argument('--save_dir', default='./output', help='where the palette-mode masks (and overlays) go')
    p.add_argument('--save_overlay', action='store_true',
                   help='also write the image blended with the mask to save_dir/added_prediction/, '
                        'in the input\'s own format')
    p.add_argument('--device', default='cpu', choices=['cpu', 'gpu'])
    p.add_argument('--backend', default='paddle', choices=list(BACKENDS))
    p.add_argument('--precision', default='fp32', choices=list(PRECISIONS),
                   help='bf16: CPUs with avx512_bf16/amx (paddle, openvino); int8: model_int8.onnx from '
                        'tools/quant.py (onnxruntime, openvino); fp16: GPU')
    p.add_argument('--batch_size', type=int, default=1)
    p.add_argument('--enable_mkldnn', nargs='?', const=True, default=True, type=_bool,
                   help='oneDNN on CPU (default on; --enable_mkldnn False turns it off)')
    p.add_argument('--cpu_threads', type=int, default=None,
                   help=f'math library threads (default: every core this process may use, here {default_threads()})')
    p.add_argument('--use_trt', nargs='?', const=True, default=False, type=_bool, help='TensorRT (gpu)')
    p.add_argument('--trt_cache', nargs='?', const=True, default=True, type=_bool,
                   help='TensorRT: keep the built engines in <export>/_opt_cache and reuse them (default on)')
    p.add_argument('--min_subgraph_size', type=int, default=3, help='TensorRT: smallest subgraph to convert')
    p.add_argument('--auto_tuned_shape_file', default=None,
                   help='TensorRT: tuned dynamic shape file (collected with --collect_shape_range first)')
    p.add_argument('--collect_shape_range', action='store_true',
                   help='TensorRT: run the images without TRT and record tensor shape ranges into '
                        '--auto_tuned_shape_file')
    p.add_argument('--enable_auto_tune', nargs='?', const=True, default=False, type=_bool,
                   help='PaddleSeg\'s spelling: collect the shape ranges on --image_path, then run TensorRT with '
                        'them (= --collect_shape_range with --auto_tuned_shape_file <export>/auto_tune_tmp.pbtxt)')
    p.add_argument('--with_argmax', nargs='?', const=True, default=None, type=_bool,
                   help='PaddleSeg\'s spelling; accepted: masks are always class ids (argmax in the graph with '
                        '--output_op argmax at export, else here)')
    p.add_argument('--benchmark', nargs='?', const=True, default=False, type=_bool,
                   help='time preprocess / inference / postprocess')
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--repeats', type=int, default=20)
    p.add_argument('--json', default=None, help='benchmark / --dataset_config: also write the results as JSON here')
    p.add_argument('--print_detail', nargs='?', const=True, default=False, type=_bool,
                   help='Paddle Inference logs')
    p.add_argument('--benchmark_worker', default=None, help=argparse.SUPPRESS)  # tools/benchmark.py: input .npy
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error('--batch_size must be >= 1')
    if args.cpu_threads is not None and args.cpu_threads < 1:
        p.error('--cpu_threads must be >= 1')
    if not (args.image_path or args.dataset_config or args.benchmark_worker):
        p.error('one of --image_path or --dataset_config is required')
    if args.with_argmax is False:
        p.error('--with_argmax False: masks are always class ids; export with --output_op softmax or none '
                'and use the Paddle Inference API for the scores')
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
    pred.cfg, pred.backend, pred.device, pred.precision = cfg, 'paddle', args.device, 'fp32'
    pred.threads = args.cpu_threads or default_threads()
    config = inference.Config(cfg.model_file, cfg.params_file)
    config.enable_use_gpu(256, 0) if args.device == 'gpu' else config.disable_gpu()
    config.collect_shape_range_info(args.auto_tuned_shape_file)
    pred.predictor = inference.create_predictor(config)
    pred.input_name = pred.predictor.get_input_names()[0]
    pred.output_name = pred.predictor.get_output_names()[0]
    infer_images(pred, files, args.batch_size)
    print(f'collected tensor shape ranges into {args.auto_tuned_shape_file}')


def make_predictor(cfg, args):
    return Predictor(cfg, backend=args.backend, device=args.device, enable_mkldnn=args.enable_mkldnn,
                     cpu_threads=args.cpu_threads, use_trt=args.use_trt, precision=args.precision,
                     min_subgraph_size=args.min_subgraph_size, auto_tuned_shape_file=args.auto_tuned_shape_file,
                     batch_size=args.batch_size, print_detail=args.print_detail, trt_cache=args.trt_cache)


def main(argv=None):
    args = parse_args(argv)
    cfg = DeployConfig(args.config)
    if args.benchmark_worker:
        predictor = make_predictor(cfg, args)
        x = np.load(args.benchmark_worker)
        serve(lambda: predictor.run(x),
              lambda out: out if cfg.output_op == 'argmax' else np.asarray(out).argmax(axis=1),
              describe=predictor.describe())
        return 0
    if args.dataset_config:
        res = evaluate_dataset(make_predictor(cfg, args), args.dataset_config, args.opts)
        print(f'{args.config} ({args.backend} {args.precision}) on {args.dataset_config}: '
              f'mIoU {100 * res["mIoU"]:.2f}  aAcc {100 * res["aAcc"]:.2f}  mAcc {100 * res["mAcc"]:.2f} '
              f'({res["images"]} images)')
        if args.json:
            os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
            with open(args.json, 'w', encoding='utf-8') as f:
                json.dump({k: (v.tolist() if hasattr(v, 'tolist') else v) for k, v in res.items()}, f, indent=2)
        return 0
    files = list_images(args.image_path)
    for f in files:  # fail on a non-image before loading the model (header check only)
        if not cv2.haveImageReader(f):
            raise DeployError(f'image file {f!r} cannot be decoded (corrupt or not an image)')
    if args.enable_auto_tune:
        if not (args.use_trt and args.device == 'gpu'):
            raise DeployError('--enable_auto_tune tunes TensorRT\'s dynamic shapes: it needs --device gpu --use_trt')
        args.auto_tuned_shape_file = args.auto_tuned_shape_file or os.path.join(cfg.dir, 'auto_tune_tmp.pbtxt')
        args.collect_shape_range = True
    if args.collect_shape_range:
        collect_shape_range(cfg, args, files)
    predictor = make_predictor(cfg, args)
    results = infer_images(predictor, files, args.batch_size)
    root = args.image_path if os.path.isdir(args.image_path) else None
    written = save_masks(results, args.save_dir, cfg.palette, root)
    if args.save_overlay:
        save_overlays(results, args.save_dir, cfg.palette, root)
    print(f'saved {len(written)} mask(s) to {args.save_dir}' + (' (and overlays in added_prediction/)'
                                                               if args.save_overlay else ''))
    if args.benchmark:
        stats = benchmark(predictor, files, args.batch_size, args.warmup, args.repeats, args.device)
        stats.update({'backend': args.backend, 'device': args.device, 'enable_mkldnn': bool(args.enable_mkldnn),
                      'cpu_threads': predictor.threads, 'precision': args.precision, 'config': args.config})
        title = (f'benchmark: {args.backend} {args.precision} on {args.device}'
                 + (f', oneDNN {"on" if args.enable_mkldnn else "off"}' if args.backend == 'paddle' else '')
                 + (f', {predictor.threads} threads' if args.device == 'cpu' else '')
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
