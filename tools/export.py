"""Export a trained model for deployment (PaddleSeg's ``tools/export.py`` flags).

    python tools/export.py --config configs/fast_scnn/fast_scnn_cityscapes_512x1024_160k.yml \
        --model_path output/best_model/model.pdparams --save_dir output/export \
        [--input_shape 1 3 512 1024] [--output_op argmax|softmax|none] [--format paddle|onnx]

Writes ``model.json`` (Paddle 3 / PIR; ``model.pdmodel`` on older Paddle) + ``model.pdiparams``
+ ``deploy.yaml`` (and ``model.onnx`` with ``--format onnx``) into ``--save_dir``; serve them
with ``deploy/python/infer.py --config <save_dir>/deploy.yaml``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from zoo.utils.cli import ArgumentParser, main_wrapper  # noqa: E402


def parse_args(argv=None):
    p = ArgumentParser(description='Export a model to a static graph + deploy.yaml.')
    p.add_argument('--config', required=True, help='YAML config file')
    p.add_argument('--model_path', default=None, help='trained weights (model.pdparams)')
    p.add_argument('--save_dir', default='output/inference_model', help='output folder')
    p.add_argument('--input_shape', nargs=4, type=int, default=None, metavar=('N', 'C', 'H', 'W'),
                   help='fixed input shape (default: dynamic [-1, 3, -1, -1]; -1 keeps a dimension dynamic)')
    p.add_argument('--output_op', default='argmax', choices=['argmax', 'softmax', 'none'],
                   help='argmax: int32 class ids [N,H,W]; softmax / none: float32 [N,C,H,W]')
    p.add_argument('--format', default='paddle', choices=['paddle', 'onnx'],
                   help='onnx also writes model.onnx through paddle2onnx (pip install -e .[onnx])')
    p.add_argument('--opts', nargs='+', default=[], help='config overrides: key.subkey=value ...')
    p.add_argument('--verbose', action='store_true', help='show the third-party warnings export filters out')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from zoo.export import export_model
    from zoo.utils.config import Config
    cfg = Config(args.config, opts=args.opts)
    deploy = export_model(cfg, args.save_dir, model_path=args.model_path, input_shape=args.input_shape,
                          output_op=args.output_op, fmt=args.format, verbose=args.verbose)
    files = list(dict.fromkeys(deploy[k] for k in ('model', 'params', 'bf16_model', 'bf16_params', 'onnx')
                               if deploy.get(k))) + ['deploy.yaml']
    print(f'exported to {args.save_dir}: {", ".join(files)} (input shape {deploy["input_shape"]}, '
          f'output {deploy["output_op"]} {deploy["output_dtype"]})')


if __name__ == '__main__':
    main_wrapper(main)
