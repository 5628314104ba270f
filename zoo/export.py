"""Export a trained model to a static graph for deployment (Paddle Inference, ONNX).

``export_model(config, model_path, save_dir)`` runs ``paddle.jit.to_static`` +
``paddle.jit.save`` and writes ``deploy.yaml`` next to the program, as PaddleSeg does, but:

* With Paddle 3 (PIR) the program file is ``model.json``, not ``model.pdmodel``;
  ``deploy.yaml`` names the file actually written, and loaders accept either.
* H and W are dynamic (``[-1, 3, -1, -1]``) unless an input shape is given; models
  take sizes from ``paddle.shape(x)`` (docs/architecture.md), so one program serves every
  image size.
* ``deploy.yaml`` carries the preprocessing (the config's ``export.transforms`` or, by
  default, its ``val_dataset.transforms`` with every argument spelled out), the output op,
  the output dtype and the input shape, so ``deploy/python/infer.py`` needs nothing else.

``--format onnx`` also converts the program with paddle2onnx (``pip install .[onnx]``).
"""
import glob
import hashlib
import inspect
import os
import shutil
import subprocess
import sys
import tempfile

import paddle
import paddle.nn.functional as F
import yaml

from .builder import as_config, build_model, dataset_num_classes
from .models.weights import without_pretrained  # noqa: F401  (zoo.benchmark imports it from here)
from .utils.checkpoint import load_state_dict_checked, read_state_dict
from .utils.errors import ConfigError, ZooError
from .utils.logger import logger
from .utils.registry import TRANSFORMS

OUTPUT_OPS = ('argmax', 'softmax', 'none')
# The preprocessing ops deploy/python/infer.py re-implements in numpy/cv2.
DEPLOY_TRANSFORMS = ('Normalize', 'Resize', 'ResizeByShort')
ONNX_OPSET = 13  # paddle2onnx 2.1.0 converts PIR exports of every model here at opset 13
PROGRAM_FILES = ('model.json', 'model.pdmodel')  # PIR (Paddle 3) first, legacy second


class ExportWrapper(paddle.nn.Layer):
    """The deployed graph: the main logits of the model followed by the output op.

    ``argmax`` -> int32 ``[N, H, W]`` class ids; ``softmax`` -> float32 ``[N, C, H, W]``
    probabilities; ``none`` -> float32 ``[N, C, H, W]`` logits.
    """

    def __init__(self, model, output_op='argmax'):
        super().__init__()
        if output_op not in OUTPUT_OPS:
            raise ConfigError(f'--output_op: expected one of {", ".join(OUTPUT_OPS)}, got {output_op!r}')
        self.model = model
        self.output_op = output_op

    def forward(self, x):
        logits = self.model(x)[0]
        if self.output_op == 'argmax':
            return paddle.argmax(logits, axis=1, dtype='int32')
        if self.output_op == 'softmax':
            return F.softmax(logits, axis=1)
        return logits


def _adaptive_avg_pool2d_by_slices(x, output_size, data_format='NCHW', name=None):
    """``F.adaptive_avg_pool2d`` as means over slices, for graphs with dynamic H, W.

    paddle2onnx converts ``pool2d(adaptive=True)`` only for static input shapes (ONNX has no
    adaptive pooling op), which would tie every model with pyramid pooling (Fast-SCNN's PPM,
    DMNet's filter generation, ASPP image pooling) to one input size. Bin ``i`` of ``s`` over a
    side of length ``L`` spans ``[floor(i * L / s), ceil((i + 1) * L / s))``, Paddle's (and
    torch's) adaptive rule, so the result equals the native op for every size.
    """
    if data_format != 'NCHW':
        return _NATIVE_ADAPTIVE_AVG_POOL2D(x, output_size, data_format, name)
    sizes = [output_size, output_size] if isinstance(output_size, int) else list(output_size)
    if sizes == [1, 1]:
        return paddle.mean(x, axis=[2, 3], keepdim=True)
    shape = paddle.shape(x)
    h, w = shape[2], shape[3]
    sh, sw = sizes
    if sh is None or sw is None:
        return _NATIVE_ADAPTIVE_AVG_POOL2D(x, output_size, data_format, name)
    rows = []
    for i in range(sh):
        y0, y1 = (i * h) // sh, ((i + 1) * h + sh - 1) // sh
        cols = []
        for j in range(sw):
            x0, x1 = (j * w) // sw, ((j + 1) * w + sw - 1) // sw
            cols.append(paddle.mean(x[:, :, y0:y1, x0:x1], axis=[2, 3], keepdim=True))
        rows.append(paddle.concat(cols, axis=3) if sw > 1 else cols[0])
    return paddle.concat(rows, axis=2) if sh > 1 else rows[0]


_NATIVE_ADAPTIVE_AVG_POOL2D = F.adaptive_avg_pool2d


class _exportable_pooling:
    """Trace with adaptive average pooling expressed by slices (see above)."""

    def __enter__(self):
        import paddle.nn.functional.pooling as pooling
        self._mods = [F, pooling]
        for m in self._mods:
            m.adaptive_avg_pool2d = _adaptive_avg_pool2d_by_slices

    def __exit__(self, *exc):
        for m in self._mods:
            m.adaptive_avg_pool2d = _NATIVE_ADAPTIVE_AVG_POOL2D


def output_dtype(output_op):
    return 'int32' if output_op == 'argmax' else 'float32'


def check_input_shape(input_shape, where='--input_shape'):
    """``None`` -> dynamic ``[-1, 3, -1, -1]``; else four ints ``N C H W`` (-1 = dynamic)."""
    if input_shape is None:
        return [-1, 3, -1, -1]
    shape = list(input_shape)
    if len(shape) != 4 or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise ConfigError(f'{where}: expected four integers N C H W, got {input_shape!r}')
    if shape[1] != 3:
        raise ConfigError(f'{where}: the channel dimension must be 3 (RGB), got {shape[1]}')
    if any(s == 0 or s < -1 for s in shape):
        raise ConfigError(f'{where}: sizes must be positive or -1 (dynamic), got {shape}')
    return shape


def _transform_args(cls, given):
    """The transform's arguments with defaults filled in from its signature."""
    args = {}
    try:
        params = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        params = {}
    for name, p in params.items():
        if name == 'self' or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is not inspect.Parameter.empty:
            args[name] = p.default
    args.update(given)
    return args


def _plain(value):
    """YAML-safe plain values (tuples -> lists, numpy scalars -> Python)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, 'item') and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def deploy_transforms(cfg):
    """The preprocessing written into deploy.yaml (``export.transforms`` or the val transforms).

    Only ops infer.py implements are allowed: anything else (e.g. a random crop left in
    the val pipeline) would make deployment silently differ from evaluation.
    """
    key = 'export.transforms' if cfg.get('export.transforms') is not None else 'val_dataset.transforms'
    transforms = cfg.get(key)
    if transforms is None:
        transforms = []
    if not isinstance(transforms, list):
        raise cfg.error(key, f'expected a list of transform dicts, got {transforms!r}')
    out = []
    for i, t in enumerate(transforms):
        if not isinstance(t, dict) or 'type' not in t:
            raise cfg.error(f'{key}.{i}', f'expected a mapping with a "type" key, got {t!r}')
        if t['type'] not in DEPLOY_TRANSFORMS:
            raise cfg.error(f'{key}.{i}.type', f'{t["type"]} cannot be deployed (deploy/python/infer.py '
                            f'implements {", ".join(DEPLOY_TRANSFORMS)}); set export.transforms')
        given = {k: v for k, v in t.items() if k != 'type'}
        args = _transform_args(TRANSFORMS[t['type']], given) if t['type'] in TRANSFORMS else given
        out.append({'type': t['type'], **_plain(args)})
    return out


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def find_program(model_dir, prefix='model'):
    """The program file paddle.jit.save wrote: ``model.json`` (PIR) or ``model.pdmodel``."""
    for suffix in ('.json', '.pdmodel'):
        path = os.path.join(model_dir, prefix + suffix)
        if os.path.isfile(path):
            return os.path.basename(path)
    found = glob.glob(os.path.join(model_dir, prefix + '.*'))
    raise RuntimeError(f'paddle.jit.save wrote no program file in {model_dir} (found {found})')


def _fold(conv, bn):
    """conv -> bn (eval) as one conv: w * g / sqrt(v + eps), (b - m) * g / sqrt(v + eps) + beta."""
    scale = bn.weight / paddle.sqrt(bn._variance + bn._epsilon)
    shape = [-1] + [1] * (len(conv.weight.shape) - 1)
    conv.weight.set_value(conv.weight * scale.reshape(shape))
    bias = conv.bias if conv.bias is not None else paddle.zeros_like(bn._mean)
    new_bias = (bias - bn._mean) * scale + bn.bias
    if conv.bias is None:
        conv.bias = conv.create_parameter(shape=[int(conv.weight.shape[0])], is_bias=True)
    conv.bias.set_value(new_bias)


def fold_batch_norms(model):
    """Fold every eval-mode BatchNorm that directly follows a Conv2D into the conv; returns the
    number folded.

    Paddle Inference 3.2.2's oneDNN passes leave some conv + BN pairs unfused (measured on
    Fast-SCNN: 6 of 44 BNs), and an unfused BN runs as four elementwise ops over the whole
    feature map, which cost more than all the convolutions together. Folding before tracing
    makes the exported graph free of BN whatever the passes do. Pairs recognised: ``conv`` /
    ``bn`` attributes (``ConvModule``), ``convN`` / ``bnN`` (ResNet blocks), and consecutive
    Conv2D, BatchNorm in an ``nn.Sequential``.
    """
    bn_types = (paddle.nn.BatchNorm2D, paddle.nn.BatchNorm, paddle.nn.SyncBatchNorm)
    folded = 0

    def ok(conv, bn):
        return (isinstance(conv, paddle.nn.Conv2D) and isinstance(bn, bn_types) and not bn.training
                and int(conv.weight.shape[0]) == int(bn.weight.shape[0]))

    for layer in list(model.sublayers(include_self=True)):
        children = dict(layer.named_children())
        pairs = [('conv', 'bn')] + [(f'conv{i}', f'bn{i}') for i in range(1, 6)]
        for c, b in pairs:
            if c in children and b in children and ok(children[c], children[b]):
                _fold(children[c], children[b])
                setattr(layer, b, paddle.nn.Identity())
                folded += 1
        if isinstance(layer, paddle.nn.Sequential):
            names = list(children)
            for c, b in zip(names, names[1:]):
                if ok(children[c], children[b]):
                    _fold(children[c], children[b])
                    layer._sub_layers[b] = paddle.nn.Identity()
                    folded += 1
    return folded


def build_export_model(config, model_path=None, output_op='argmax'):
    """Build the config's model, load ``model_path`` (strictly) and wrap it for export."""
    cfg = as_config(config)
    model = build_model(without_pretrained(cfg) if model_path else cfg)
    if model_path:
        sd = read_state_dict(model_path, 'model weights')
        load_state_dict_checked(model, sd, f'--model_path {model_path}', strict=True)
    else:
        logger.warning('no --model_path given: exporting the randomly initialized / pretrained weights')
    return cfg, prepare_export_model(model, output_op)


def prepare_export_model(model, output_op='argmax'):
    """Eval mode, BatchNorms folded into their convs (in place), wrapped with the output op."""
    model.eval()
    fold_batch_norms(model)
    wrapper = ExportWrapper(model, output_op)
    wrapper.eval()
    return wrapper


def save_static(wrapper, save_dir, input_shape, prefix='model', for_onnx=False):
    """to_static + jit.save into ``save_dir``; returns (program file name, params file name).

    ``for_onnx`` traces adaptive pooling as slice means (ONNX has no adaptive pooling). The
    Paddle program keeps the native op: with oneDNN it is faster (Fast-SCNN 512x1024, 2
    threads: 481 ms native vs 802 ms with the 50 slice means of its PPM).
    """
    spec = [paddle.static.InputSpec(shape=[None if s == -1 else s for s in input_shape],
                                    dtype='float32', name='x')]
    static = paddle.jit.to_static(wrapper, input_spec=spec, full_graph=True)
    if for_onnx:
        with _exportable_pooling():
            paddle.jit.save(static, os.path.join(save_dir, prefix), input_spec=spec)
    else:
        paddle.jit.save(static, os.path.join(save_dir, prefix), input_spec=spec)
    return find_program(save_dir, prefix), prefix + '.pdiparams'


def export_onnx(save_dir, program, params, opset=ONNX_OPSET, name='model.onnx'):
    """Convert the saved program with paddle2onnx; returns the file name.

    paddle2onnx aborts the whole process (SIGABRT) on an op it cannot convert, so it runs in
    a child process and its ``[ERROR]`` lines become a one-line ZooError.
    """
    try:
        import paddle2onnx  # noqa: F401
    except ImportError:
        raise ConfigError('--format onnx needs paddle2onnx: pip install "paddle2onnx==2.1.0" onnxruntime '
                          '(or pip install -e .[onnx])') from None
    dst = os.path.join(save_dir, name)
    # optimize_tool: the default (polygraphy) pip-installs onnx_graphsurgeon at run time
    code = ('import sys, paddle2onnx; paddle2onnx.export(sys.argv[1], sys.argv[2], sys.argv[3], '
            f'opset_version={int(opset)}, enable_onnx_checker=True, verbose=False, '
            "optimize_tool='onnxoptimizer')")
    r = subprocess.run([sys.executable, '-c', code, os.path.join(save_dir, program),
                        os.path.join(save_dir, params), dst], capture_output=True, text=True)
    if r.returncode != 0 or not os.path.isfile(dst):
        out = r.stdout + r.stderr
        errors = [ln.strip() for ln in out.splitlines() if '[ERROR]' in ln] or out.strip().splitlines()[-1:]
        raise ZooError(f'paddle2onnx cannot convert {program}: {" ".join(errors)[:400]} '
                       '(the Paddle program itself is fine: export with --format paddle)')
    return name


def export_model(config, save_dir, model_path=None, input_shape=None, output_op='argmax',
                 fmt='paddle', opts=None, model=None):
    """Export a config's model into ``save_dir``; returns the deploy.yaml dict.

    ``model``: an already built (and loaded) model of this config to export instead of building
    one from the config and ``model_path``; it is switched to eval mode and its BatchNorms are
    folded into the convolutions in place, so run it in dygraph before, not after.

    Files: ``model.json`` (or ``model.pdmodel``), ``model.pdiparams``, ``deploy.yaml`` and,
    with ``fmt='onnx'``, ``model.onnx``. The folder is written under a temporary name and
    moved into place, so a failed export never leaves a half-written deploy folder.
    """
    if fmt not in ('paddle', 'onnx'):
        raise ConfigError(f'--format: expected paddle or onnx, got {fmt!r}')
    if fmt == 'onnx':
        try:
            import paddle2onnx  # noqa: F401  (fail before the slow part)
        except ImportError:
            export_onnx(save_dir, '', '')
    cfg = as_config(config, opts=opts) if not hasattr(config, 'dic') else config
    if input_shape is None and cfg.get('export.input_shape') is not None:
        input_shape = check_input_shape(cfg.get('export.input_shape'), cfg.where('export.input_shape'))
    shape = check_input_shape(input_shape)
    transforms = deploy_transforms(cfg)
    if model is not None:
        wrapper = prepare_export_model(model, output_op)
    else:
        cfg, wrapper = build_export_model(cfg, model_path, output_op)

    save_dir = os.path.abspath(save_dir)
    parent = os.path.dirname(save_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.' + os.path.basename(save_dir) + '.', dir=parent)
    try:
        program, params = save_static(wrapper, tmp, shape)
        deploy = {
            'model': program,
            'params': params,
            'transforms': transforms,
            'input_shape': shape,
            'output_op': output_op,
            'output_dtype': output_dtype(output_op),
            'num_classes': cfg.get('model.num_classes') or dataset_num_classes(cfg),
            'config': cfg.path,
        }
        if fmt == 'onnx':
            src = os.path.join(tmp, '.onnx_src')
            os.makedirs(src)
            onnx_program, onnx_params = save_static(ExportWrapper(wrapper.model, output_op), src, shape,
                                                    for_onnx=True)
            export_onnx(src, onnx_program, onnx_params)
            os.replace(os.path.join(src, 'model.onnx'), os.path.join(tmp, 'model.onnx'))
            shutil.rmtree(src)
            deploy['onnx'] = 'model.onnx'
        # lets infer.py tell a params/program file from another export (Paddle Inference would
        # otherwise run a params file of another model if the tensor count matches)
        deploy['sha256'] = {name: file_sha256(os.path.join(tmp, name))
                            for name in (program, params, deploy.get('onnx')) if name}
        with open(os.path.join(tmp, 'deploy.yaml'), 'w', encoding='utf-8') as f:
            yaml.safe_dump({'Deploy': deploy}, f, sort_keys=False)
        _replace_dir(tmp, save_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info(f'exported {cfg.path} -> {save_dir} ({program}, {params}'
                + (f', {deploy["onnx"]}' if 'onnx' in deploy else '') + ')')
    return deploy


def _replace_dir(src, dst):
    """Move the finished export into place, keeping unrelated files a user put in ``dst``
    (deploy.yaml names the files that belong to this export)."""
    if not os.path.isdir(dst):
        os.rename(src, dst)
        return
    for name in os.listdir(src):
        os.replace(os.path.join(src, name), os.path.join(dst, name))
    os.rmdir(src)
