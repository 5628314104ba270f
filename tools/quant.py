"""int8 post-training quantization: export + ``model_int8.onnx`` calibrated on the training set.

    python tools/quant.py --config configs/fast_scnn/fast_scnn_cityscapes_512x1024_160k.yml \
        --model_path output/best_model/model.pdparams --calib_images 100 --save_dir output/export_int8 \
        [--calib_method percentile|minmax|entropy] [--output_op argmax|softmax|none]

Writes a complete export folder (the fp32 programs, ``model.onnx``) plus ``model_int8.onnx``,
named in ``deploy.yaml`` as ``onnx_int8``; serve it with
``deploy/python/infer.py --config <save_dir>/deploy.yaml --precision int8 --backend onnxruntime|openvino``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from zoo.utils.cli import ArgumentParser, main_wrapper  # noqa: E402


def parse_args(argv=None):
    p = ArgumentParser(description='Quantize a trained model to int8 (QDQ ONNX) calibrated on training images.')
    p.add_argument('--config', required=True, help='YAML config file (its train_dataset calibrates)')
    p.add_argument('--model_path', required=True, help='trained weights (model.pdparams)')
    p.add_argument('--calib_images', type=int, default=100, help='training images to calibrate on (default 100)')
    p.add_argument('--calib_method', default='percentile', choices=['percentile', 'minmax', 'entropy'],
                   help='activation range estimate (default percentile 99.999)')
    p.add_argument('--save_dir', default='output/inference_model_int8', help='output folder')
    p.add_argument('--output_op', default='argmax', choices=['argmax', 'softmax', 'none'])
    p.add_argument('--input_shape', nargs=4, type=int, default=None, metavar=('N', 'C', 'H', 'W'))
    p.add_argument('--seed', type=int, default=0, help='which training images calibrate')
    p.add_argument('--opts', nargs='+', default=[], help='config overrides: key.subkey=value ...')
    p.add_argument('--verbose', action='store_true', help='show third-party warnings')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from zoo.export import export_model
    from zoo.export.quant import calibration_inputs, int8_step, require_onnxruntime_quantization
    from zoo.utils.config import Config
    require_onnxruntime_quantization()
    cfg = Config(args.config, opts=args.opts)
    inputs = list(calibration_inputs(cfg, args.calib_images, args.seed))  # read the data before exporting
    report = {}

    export_model(cfg, args.save_dir, model_path=args.model_path, input_shape=args.input_shape,
                 output_op=args.output_op, fmt='onnx', verbose=args.verbose,
                 extra_step=int8_step(inputs, args.calib_method, args.verbose, report=report,
                                      calibration={'seed': args.seed, 'split': 'train'}))
    print(f'quantized {report["nodes"]} conv/matmul nodes on {len(inputs)} training images -> '
          f'{os.path.join(args.save_dir, "model_int8.onnx")} (serve with deploy/python/infer.py --precision int8 '
          '--backend onnxruntime|openvino)')


if __name__ == '__main__':
    main_wrapper(main)
