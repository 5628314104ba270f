"""Paddle Seg Zoo: ``pip install -e .`` (``.[convert]`` adds torch for importing PyTorch
checkpoints, ``.[onnx]`` paddle2onnx, onnx and onnxruntime for ONNX export, int8 quantization
(tools/quant.py) and ONNX Runtime inference, ``.[openvino]`` OpenVINO inference of the ONNX
export (``deploy/python/infer.py --backend openvino``), ``.[deploy]`` both runtimes)."""
import os
import re

from setuptools import find_packages, setup

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, 'zoo', '__init__.py'), encoding='utf-8') as f:
    version = re.search(r"__version__ = '([^']+)'", f.read()).group(1)
with open(os.path.join(here, 'requirements.txt'), encoding='utf-8') as f:
    requirements = [ln.strip() for ln in f if ln.strip() and not ln.startswith('#')]
# GPU users install paddlepaddle-gpu of the same version themselves; don't force the CPU wheel.
if os.environ.get('ZOO_SKIP_PADDLE_REQUIREMENT'):
    requirements = [r for r in requirements if not r.startswith('paddlepaddle')]

setup(
    name='paddle-seg-zoo',
    version=version,
    description='Semantic segmentation model zoo for PaddlePaddle 3 (dygraph)',
    long_description=open(os.path.join(here, 'README.md'), encoding='utf-8').read()
    if os.path.exists(os.path.join(here, 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['zoo', 'zoo.*']),
    python_requires='>=3.9',
    install_requires=requirements,
    extras_require={
        'convert': ['torch'],
        'onnx': ['paddle2onnx==2.1.0', 'onnx', 'onnxruntime'],
        'openvino': ['openvino>=2024.0'],
        'deploy': ['paddle2onnx==2.1.0', 'onnx', 'onnxruntime', 'openvino>=2024.0'],
        'test': ['pytest>=7.4', 'pytest-timeout>=2.2'],
    },
)
