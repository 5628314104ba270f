"""``export_model``: trace a trained model into a static program + deploy.yaml (+ ONNX).

As PaddleSeg's export, but:

* With Paddle 3 (PIR) the program file is ``model.json``, not ``model.pdmodel``;
  ``deploy.yaml`` names the file actually written, and loaders accept either.
* H and W are dynamic (``[-1, 3, -1, -1]``) unless an input shape is given; models
  take sizes from ``paddle.shape(x)`` (docs/architecture.md), so one program serves every
  image size.
* The folder is written under a temporary name and moved into place, so a failed export
  never leaves a half-written deploy folder.
"""
import contextlib
import os
import tempfile

import paddle

from ..builder import as_config
from ..utils.atomic import atomic_dir
from ..utils.errors import ConfigError
from ..utils.logger import logger
from .deploy_yaml import class_meta, config_num_classes, deploy_transforms, find_program, write_deploy_yaml
from .onnx import export_onnx, require_paddle2onnx
from ..utils.quiet import filtered_stderr
from .tracing import REWRITES, paddle_inference_rewrites, portable_pooling
from .wrapper import ExportWrapper, build_export_model, check_input_shape, output_dtype, prepare_export_model

FORMATS = ('paddle', 'onnx')


def save_static(wrapper, save_dir, input_shape, prefix='model', portable=False, for_paddle=True, verbose=False):
    """to_static + jit.save into ``save_dir``; returns (program file name, params file name).

    ``portable`` traces adaptive pooling as matrix products (ONNX has no adaptive pooling op;
    oneDNN has no bfloat16 kernel for it); the fp32 Paddle program keeps the native op, which
    oneDNN runs fastest. ``for_paddle`` applies the Paddle Inference rewrites of
    :mod:`zoo.export.tracing` (not wanted in the program ONNX is converted from).
    """
    spec = [paddle.static.InputSpec(shape=[None if s == -1 else s for s in input_shape],
                                    dtype='float32', name='x')]
    with filtered_stderr(verbose), contextlib.ExitStack() as stack:
        # a fresh wrapper per trace: to_static caches the program it built first
        static = paddle.jit.to_static(ExportWrapper(wrapper.model, wrapper.output_op), input_spec=spec,
                                      full_graph=True)
        if portable:
            stack.enter_context(portable_pooling())
        if for_paddle:
            stack.enter_context(paddle_inference_rewrites())
        paddle.jit.save(static, os.path.join(save_dir, prefix), input_spec=spec)
    return find_program(save_dir, prefix), prefix + '.pdiparams'


def _export_files(wrapper, folder, shape, fmt, verbose):
    """Write the programs into ``folder``; returns the deploy.yaml file entries."""
    program, params = save_static(wrapper, folder, shape, verbose=verbose)
    files = {'model': program, 'params': params}
    # The bfloat16 program (Paddle Inference, oneDNN): the same graph with portable pooling,
    # written only when tracing it differs from the fp32 one (the model has adaptive pooling).
    rewrites = REWRITES['channel_scale']
    bf16_program, bf16_params = save_static(wrapper, folder, shape, prefix='model_bf16', portable=True,
                                            verbose=verbose)
    rewritten = REWRITES['channel_scale'] > rewrites  # else this program is also the one for ONNX
    if fmt == 'onnx' and not rewritten:
        export_onnx(os.path.join(folder, bf16_program), os.path.join(folder, bf16_params),
                    os.path.join(folder, 'model.onnx'))
    if _same_file(os.path.join(folder, program), os.path.join(folder, bf16_program)):
        os.remove(os.path.join(folder, bf16_program))
        os.remove(os.path.join(folder, bf16_params))
    else:
        files['bf16_model'] = bf16_program
        if _same_file(os.path.join(folder, params), os.path.join(folder, bf16_params)):
            os.remove(os.path.join(folder, bf16_params))  # the same tensors: one params file serves both
            bf16_params = params
        files['bf16_params'] = bf16_params
    if fmt == 'onnx' and rewritten:
        # paddle2onnx reads a program traced for it: portable pooling, no Paddle Inference rewrites
        with tempfile.TemporaryDirectory(dir=folder) as src:
            onnx_program, onnx_params = save_static(wrapper, src, shape, portable=True, for_paddle=False,
                                                    verbose=verbose)
            export_onnx(os.path.join(src, onnx_program), os.path.join(src, onnx_params),
                        os.path.join(folder, 'model.onnx'))
    if fmt == 'onnx':
        files['onnx'] = 'model.onnx'
    return files


def _same_file(a, b):
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        return fa.read() == fb.read()


def export_model(config, save_dir, model_path=None, input_shape=None, output_op='argmax', fmt='paddle', opts=None,
                 model=None, verbose=False, extra_step=None):
    """Export a config's model into ``save_dir``; returns the deploy.yaml dict.

    ``model``: an already built (and loaded) model of this config to export instead of building
    one from the config and ``model_path``; it is switched to eval mode and its BatchNorms are
    folded into the convolutions in place, so run it in dygraph before, not after.
    ``extra_step(folder, deploy)``: called on the finished temporary folder before it is moved
    into place (tools/quant.py adds the int8 model there), may add entries to ``deploy``.

    Files: ``model.json`` (or ``model.pdmodel``), ``model.pdiparams``, ``deploy.yaml``; for models
    with adaptive pooling ``model_bf16.json`` / ``.pdiparams`` (the program Paddle Inference
    runs in bfloat16); with ``fmt='onnx'``, ``model.onnx``.
    """
    if fmt not in FORMATS:
        raise ConfigError(f'--format: expected paddle or onnx, got {fmt!r}')
    if fmt == 'onnx':
        require_paddle2onnx()  # fail before the slow part
    cfg = as_config(config, opts=opts) if not hasattr(config, 'dic') else config
    if input_shape is None and cfg.get('export.input_shape') is not None:
        input_shape = check_input_shape(cfg.get('export.input_shape'), cfg.where('export.input_shape'))
    shape = check_input_shape(input_shape)
    transforms = deploy_transforms(cfg)
    if model is not None:
        wrapper = prepare_export_model(model, output_op)
    else:
        cfg, wrapper = build_export_model(cfg, model_path, output_op)
    num_classes = config_num_classes(cfg)
    class_names, palette = class_meta(cfg, num_classes)

    with atomic_dir(os.path.abspath(save_dir), 'export folder') as tmp:
        files = _export_files(wrapper, tmp, shape, fmt, verbose)
        deploy = {
            **files,
            'transforms': transforms,
            'input_shape': shape,
            'output_op': output_op,
            'output_dtype': output_dtype(output_op),
            'num_classes': num_classes,
            'class_names': class_names,
            'palette': palette,
            'config': cfg.path,
        }
        if extra_step is not None:
            extra_step(tmp, deploy)
        write_deploy_yaml(tmp, deploy)
    logger.info(f'exported {cfg.path} -> {save_dir} ({", ".join(v for k, v in files.items())})')
    return deploy

