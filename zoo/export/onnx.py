"""The saved Paddle program -> ONNX through paddle2onnx, in a child process (one job: ONNX).

paddle2onnx aborts the whole process (SIGABRT) on an op it cannot convert, so it runs in a
child process and its ``[ERROR]`` lines become a one-line ZooError.
"""
import os
import subprocess
import sys

from ..utils.errors import ConfigError, ZooError

ONNX_OPSET = 13  # paddle2onnx 2.1.0 converts PIR exports of every model here at opset 13


def require_paddle2onnx():
    try:
        import paddle2onnx  # noqa: F401
    except ImportError:
        raise ConfigError('--format onnx needs paddle2onnx: pip install "paddle2onnx==2.1.0" onnxruntime '
                          '(or pip install -e .[onnx])') from None


def export_onnx(program_path, params_path, dst, opset=ONNX_OPSET):
    """Convert ``program_path`` + ``params_path`` into the ONNX file ``dst``."""
    require_paddle2onnx()
    # optimize_tool: the default (polygraphy) pip-installs onnx_graphsurgeon at run time
    code = ('import sys, paddle2onnx; paddle2onnx.export(sys.argv[1], sys.argv[2], sys.argv[3], '
            f'opset_version={int(opset)}, enable_onnx_checker=True, verbose=False, '
            "optimize_tool='onnxoptimizer')")
    r = subprocess.run([sys.executable, '-c', code, program_path, params_path, dst], capture_output=True, text=True)
    if r.returncode != 0 or not os.path.isfile(dst):
        out = r.stdout + r.stderr
        errors = [ln.strip() for ln in out.splitlines() if '[ERROR]' in ln] or out.strip().splitlines()[-1:]
        raise ZooError(f'paddle2onnx cannot convert {os.path.basename(program_path)}: {" ".join(errors)[:400]} '
                       '(the Paddle program itself is fine: export with --format paddle)')
    return dst
