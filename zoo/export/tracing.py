"""Export-time graph transformations: functions swapped in while ``paddle.jit.save`` traces.

The models in ``zoo/models`` stay as they are (they are written for training and dygraph);
what a runtime needs differently is substituted only while the static program is traced,
and every substitute computes the same values as the op it replaces:

* **adaptive average pooling with dynamic H, W** (Fast-SCNN's PPM, DMNet, ASPP image
  pooling). ONNX has no adaptive pooling op (paddle2onnx converts ``pool2d(adaptive)`` only for
  static shapes) and Paddle Inference's oneDNN has no bfloat16 kernel for it. Written as two
  small matrix products with averaging matrices built from the runtime size, it converts to
  ONNX for any size and runs in bfloat16.
* **channel scaling** ``x * s`` with ``x`` ``[N, C, H, W]`` and ``s`` ``[N, C, 1, 1]``
  (squeeze-and-excitation in RegSeg's D blocks, split attention in ResNeSt). After a grouped
  convolution oneDNN holds ``x`` in its 16-channel blocked layout and ``s`` in another one, and
  Paddle Inference 3.2.2 then runs the multiply in oneDNN's reference (scalar) kernel: 82 % of
  RegSeg's time at 512x1024. Multiplying in NHWC (``x`` transposed, ``s`` as ``[N, 1, 1, C]``)
  takes the vectorized kernel: RegSeg exp48 1285 -> 347 ms of CPU time (1 thread).
  (Reshaping the resize input to ``[N*C, H, W]`` and back, to have the full-resolution output
  written in NCHW, measured 6 % faster on Fast-SCNN but returns wrong values in Paddle
  Inference 3.2.2 with oneDNN: not done.)

The channel-scale rewrite is for Paddle Inference only (:func:`paddle_inference_rewrites`); the
ONNX file is traced without it (ONNX Runtime and OpenVINO choose their own layouts).
"""
import contextlib

import paddle
import paddle.nn.functional as F

_NATIVE_ADAPTIVE_AVG_POOL2D = F.adaptive_avg_pool2d


def _bin_matrix(length, bins):
    """``[bins, length]`` float32: row ``i`` averages ``[floor(i*L/s), ceil((i+1)*L/s))``,
    Paddle's (and torch's) adaptive pooling bins, for a length known only at run time."""
    i = paddle.arange(bins, dtype='int64').unsqueeze(1)
    r = paddle.arange(length, dtype='int64').unsqueeze(0)
    start = (i * length) // bins
    end = ((i + 1) * length + bins - 1) // bins
    inside = paddle.logical_and(r >= start, r < end).astype('float32')
    return inside / (end - start).astype('float32')


def _static_bins(x, output_size, data_format):
    """``[sh, sw]`` when the pooling can be rewritten (NCHW, both sizes given), else None."""
    if data_format != 'NCHW':
        return None
    sizes = [output_size, output_size] if isinstance(output_size, int) else list(output_size)
    return None if None in sizes else sizes


@paddle.jit.not_to_static  # called while tracing: ops only, no Python control flow to convert
def adaptive_avg_pool2d_by_matmul(x, output_size, data_format='NCHW', name=None):
    """``F.adaptive_avg_pool2d`` as ``P_h @ x @ P_w^T`` with averaging matrices built from the
    runtime H, W (see :func:`_bin_matrix`); ``output_size`` 1 is a plain mean."""
    sizes = _static_bins(x, output_size, data_format)
    if sizes is None:
        return _NATIVE_ADAPTIVE_AVG_POOL2D(x, output_size, data_format, name)
    if sizes == [1, 1]:
        return paddle.mean(x, axis=[2, 3], keepdim=True)
    shape = paddle.shape(x)
    ph = _bin_matrix(shape[2], sizes[0])          # [sh, H]
    pw = _bin_matrix(shape[3], sizes[1])          # [sw, W]
    # As [N*C, H, W]: Paddle Inference 3.2.2's oneDNN matmul reads a 4-D operand that comes
    # straight from a convolution (oneDNN's blocked layout) as if it were plain NCHW and returns
    # wrong values (measured: max error 0.9 on a conv -> pool -> conv net); the reshape makes
    # the layout plain first.
    x3 = paddle.reshape(x, [-1, shape[2], shape[3]])
    y = paddle.matmul(paddle.matmul(ph, x3), pw, transpose_y=True)
    return paddle.reshape(y, [shape[0], shape[1], sizes[0], sizes[1]])


def _is_channel_scale(x, s):
    """``x`` [N, C, H, W] and ``s`` [N, C, 1, 1] with the same known C (static shapes of the trace)."""
    try:
        xs, ss = list(x.shape), list(s.shape)
    except AttributeError:
        return False
    return (len(xs) == 4 and len(ss) == 4 and ss[2:] == [1, 1] and xs[2:] != [1, 1]
            and xs[1] == ss[1] and xs[1] > 0)


@paddle.jit.not_to_static  # called while tracing: ops only, no Python control flow to convert
def channel_scale_nhwc(x, s):
    """``x * s`` (``x`` [N, C, H, W], ``s`` [N, C, 1, 1]) computed in NHWC; same values."""
    shape = paddle.shape(s)
    y = paddle.transpose(x, [0, 2, 3, 1]) * paddle.reshape(s, [shape[0], 1, 1, shape[1]])
    return paddle.transpose(y, [0, 3, 1, 2])


# channel scalings rewritten by traces so far (the exporter compares counts around a trace: without
# any, the Paddle Inference program equals the one traced for ONNX)
REWRITES = {'channel_scale': 0}


def _mul_rewriting_channel_scale(native):
    def mul(self, other):
        for x, s in ((self, other), (other, self)):
            if _is_channel_scale(x, s):
                REWRITES['channel_scale'] += 1
                return channel_scale_nhwc(x, s)
        return native(self, other)
    return mul


@contextlib.contextmanager
def patched(module_attrs):
    """Swap ``(module, name) -> replacement`` for the duration of a trace; always restored."""
    saved = [(m, n, getattr(m, n)) for (m, n) in module_attrs]
    try:
        for (m, n), fn in module_attrs.items():
            setattr(m, n, fn)
        yield
    finally:
        for m, n, fn in saved:
            setattr(m, n, fn)


def portable_pooling():
    """Trace with adaptive average pooling in a portable form (ONNX, oneDNN bfloat16). (The
    earlier form, one slice + mean per bin, cost 1.6x on Fast-SCNN in Paddle Inference.)"""
    import paddle.nn.functional.pooling as pooling
    fn = adaptive_avg_pool2d_by_matmul
    return patched({(F, 'adaptive_avg_pool2d'): fn, (pooling, 'adaptive_avg_pool2d'): fn})


def paddle_inference_rewrites():
    """Trace with the rewrites that make Paddle Inference's oneDNN path fast (see above)."""
    from paddle.pir import Value
    return patched({(Value, '__mul__'): _mul_rewriting_channel_scale(Value.__mul__),
                    (Value, '__rmul__'): _mul_rewriting_channel_scale(Value.__rmul__)})
