"""Export-time graph transformations: functions swapped in while ``paddle.jit.save`` traces.

The models in ``zoo/models`` stay as they are (they are written for training and dygraph);
what a runtime needs differently is substituted only while the static program is traced,
and every substitute computes the same values as the op it replaces:

* **adaptive average pooling with dynamic H, W** (Fast-SCNN's PPM, DMNet, ASPP image
  pooling). ONNX has no adaptive pooling op (paddle2onnx converts ``pool2d(adaptive)`` only for
  static shapes) and Paddle Inference's oneDNN has no bfloat16 kernel for it. Written as two
  small matrix products with averaging matrices built from the runtime size, it converts to
  ONNX for any size and runs in bfloat16.
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


def adaptive_avg_pool2d_by_matmul(x, output_size, data_format='NCHW', name=None):
    """``F.adaptive_avg_pool2d`` as ``P_h @ x @ P_w^T`` with averaging matrices built from the
    runtime H, W (see :func:`_bin_matrix`); ``output_size`` 1 is a plain mean."""
    if data_format != 'NCHW':
        return _NATIVE_ADAPTIVE_AVG_POOL2D(x, output_size, data_format, name)
    sizes = [output_size, output_size] if isinstance(output_size, int) else list(output_size)
    if None in sizes:
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


def adaptive_avg_pool2d_by_slices(x, output_size, data_format='NCHW', name=None):
    """``F.adaptive_avg_pool2d`` as means over slices (one slice + mean per output bin), the
    same bins as :func:`_bin_matrix`. Kept for reference and tests: the matmul form is a
    handful of ops whatever the output size."""
    if data_format != 'NCHW':
        return _NATIVE_ADAPTIVE_AVG_POOL2D(x, output_size, data_format, name)
    sizes = [output_size, output_size] if isinstance(output_size, int) else list(output_size)
    if None in sizes:
        return _NATIVE_ADAPTIVE_AVG_POOL2D(x, output_size, data_format, name)
    if sizes == [1, 1]:
        return paddle.mean(x, axis=[2, 3], keepdim=True)
    shape = paddle.shape(x)
    h, w = shape[2], shape[3]
    sh, sw = sizes
    rows = []
    for i in range(sh):
        y0, y1 = (i * h) // sh, ((i + 1) * h + sh - 1) // sh
        cols = []
        for j in range(sw):
            x0, x1 = (j * w) // sw, ((j + 1) * w + sw - 1) // sw
            cols.append(paddle.mean(x[:, :, y0:y1, x0:x1], axis=[2, 3], keepdim=True))
        rows.append(paddle.concat(cols, axis=3) if sw > 1 else cols[0])
    return paddle.concat(rows, axis=2) if sh > 1 else rows[0]


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


def portable_pooling(form='matmul'):
    """Trace with adaptive average pooling in a portable form (ONNX, oneDNN bfloat16)."""
    import paddle.nn.functional.pooling as pooling
    fn = adaptive_avg_pool2d_by_matmul if form == 'matmul' else adaptive_avg_pool2d_by_slices
    return patched({(F, 'adaptive_avg_pool2d'): fn, (pooling, 'adaptive_avg_pool2d'): fn})
