"""int8 post-training quantization of the ONNX export (one job: int8).

Route, chosen by what works on the pinned Paddle 3.2.2 (docs/benchmark.md says why Paddle's
own PTQ does not reach Paddle Inference there): ONNX Runtime's static quantization writes a
QDQ ONNX model (``model_int8.onnx``: weights int8 per output channel, activations uint8 per
tensor, calibrated on training images) that ONNX Runtime and OpenVINO both run with int8
kernels (VNNI / AMX where the CPU has them).

Only convolutions and matrix products with a constant weight are quantized. The resizes, poolings (incl. the averaging matrices of portable adaptive
pooling), softmax and argmax stay in float.
"""
import os
import random
import tempfile

import numpy as np

from ..utils.errors import ConfigError, DataError
from ..utils.quiet import filtered_stderr

CALIBRATION_METHODS = ('minmax', 'percentile', 'entropy')


def require_onnxruntime_quantization():
    try:
        import onnx  # noqa: F401
        from onnxruntime import quantization  # noqa: F401
    except ImportError:
        raise ConfigError('int8 quantization needs onnx and onnxruntime: pip install onnx onnxruntime '
                          '(or pip install -e .[onnx])') from None


def calibration_inputs(cfg, num_images, seed=0, split='train'):
    """``num_images`` network inputs (``[1, 3, H, W]`` float32) from the config's training set:
    images drawn at random (seeded), preprocessed as deployment preprocesses them (the
    deploy.yaml transforms, i.e. the val pipeline), so calibration sees what inference sees."""
    from ..builder import build_dataset
    from ..datasets.base import Compose
    from .deploy_yaml import deploy_transforms
    if num_images < 1:
        raise ConfigError(f'--calib_images: expected a positive number, got {num_images}')
    dataset = build_dataset(cfg, split)
    transforms = Compose(deploy_transforms(cfg))
    order = list(range(len(dataset)))
    random.Random(seed).shuffle(order)
    if num_images > len(order):
        raise DataError(f'--calib_images {num_images}: the {split} set has only {len(order)} images')
    for i in order[:num_images]:
        sample = dataset.load_sample(i)
        out = transforms({'img': sample['img'], 'label': None})['img']
        yield np.ascontiguousarray(out.transpose(2, 0, 1)[None], dtype=np.float32)


def _weighted_nodes(model, op_types=('Conv', 'MatMul', 'Gemm')):
    """Names of the nodes of ``op_types`` whose second input is a constant (a weight)."""
    inits = {t.name for t in model.graph.initializer}
    consts = {o for n in model.graph.node if n.op_type == 'Constant' for o in n.output}
    return [n.name for n in model.graph.node
            if n.op_type in op_types and len(n.input) > 1 and (n.input[1] in inits or n.input[1] in consts)]


def quantize_onnx(src, dst, inputs, method='percentile', per_channel=True, verbose=False):
    """Calibrate ``src`` (ONNX, fp32) on ``inputs`` (an iterable of NCHW float32 arrays) and
    write the QDQ int8 model ``dst``; returns the number of quantized nodes."""
    require_onnxruntime_quantization()
    import contextlib
    import io

    import onnx
    import onnxruntime
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    if method not in CALIBRATION_METHODS:
        raise ConfigError(f'--calib_method: expected one of {", ".join(CALIBRATION_METHODS)}, got {method!r}')
    name = onnx.load(src, load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(inputs)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {name: x}

    if not verbose:
        # the sessions quantization creates would log one "Removing initializer" warning per
        # folded constant, and the calibrator prints its progress: both only noise here
        onnxruntime.set_default_logger_severity(3)
    out = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with tempfile.TemporaryDirectory() as tmp, out, filtered_stderr(verbose):
        pre = os.path.join(tmp, 'pre.onnx')
        # symbolic shape inference fails on the dynamic-size graphs (Resize to a computed size);
        # ONNX's own shape inference is enough for quantization
        quant_pre_process(src, pre, skip_symbolic_shape=True)
        model = onnx.load(pre)
        nodes = _weighted_nodes(model)
        calib = {'minmax': CalibrationMethod.MinMax, 'percentile': CalibrationMethod.Percentile,
                 'entropy': CalibrationMethod.Entropy}[method]
        extra = {'CalibPercentile': 99.999} if method == 'percentile' else {}
        quantize_static(pre, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=calib, nodes_to_quantize=nodes,
                        # one calibration input's activations at a time: ONNX Runtime otherwise keeps
                        # every intermediate tensor of every input (DeepLabV3 at 512x1024: >12 GB)
                        extra_options={'CalibTensorRangeSymmetric': False, 'CalibMaxIntermediateOutputs': 1,
                                       **extra})
    return len(nodes)


def int8_step(inputs, method='percentile', verbose=False, calibration=None, report=None):
    """``export_model(..., extra_step=int8_step(inputs))``: quantize the export's ONNX model into
    ``model_int8.onnx`` and record it in deploy.yaml (``onnx_int8``, and ``int8_calibration``:
    ``calibration`` describes the inputs). ``inputs`` may be a callable returning them, called
    when the step runs. ``report['nodes']``: the number of quantized nodes."""
    def step(folder, deploy):
        data = inputs() if callable(inputs) else inputs
        nodes = quantize_onnx(os.path.join(folder, deploy['onnx']), os.path.join(folder, 'model_int8.onnx'), data,
                              method=method, verbose=verbose)
        if report is not None:
            report['nodes'] = nodes
        deploy['onnx_int8'] = 'model_int8.onnx'
        deploy['int8_calibration'] = {'images': len(data), 'method': method, **(calibration or {})}
    return step
