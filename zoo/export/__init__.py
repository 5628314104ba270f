"""Export a trained model for deployment (Paddle Inference, ONNX Runtime, OpenVINO).

One job per module:

* ``wrapper``     - the deployed graph (model + output op), building and loading it;
* ``fold_bn``     - BatchNorm folded into the convolutions before tracing;
* ``tracing``     - export-time graph transformations (portable adaptive pooling);
* ``onnx``        - paddle2onnx in a child process;
* ``deploy_yaml`` - deploy.yaml: preprocessing, classes, palette, file digests;
* ``exporter``    - ``export_model``: all of the above into one folder, atomically.
"""
from .deploy_yaml import (DEPLOY_TRANSFORMS, PROGRAM_FILES, class_meta, deploy_transforms, file_sha256,  # noqa: F401
                          find_program, write_deploy_yaml)
from .exporter import FORMATS, export_model, save_static  # noqa: F401
from .fold_bn import fold_batch_norms  # noqa: F401
from .onnx import ONNX_OPSET, export_onnx  # noqa: F401
from .tracing import adaptive_avg_pool2d_by_matmul, paddle_inference_rewrites, portable_pooling  # noqa: F401
from .wrapper import (OUTPUT_OPS, ExportWrapper, build_export_model, check_input_shape, output_dtype,  # noqa: F401
                      prepare_export_model, without_pretrained)
