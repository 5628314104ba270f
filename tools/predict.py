"""Predict images with trained weights (PaddleSeg's ``tools/predict.py`` flags).

    python tools/predict.py --config configs/fast_scnn/fast_scnn_cityscapes_512x1024_160k.yml \
        --model_path output/best_model/model.pdparams --image_path demo.png|images/ --save_dir output/result \
        [--is_slide --crop_size 1024 512 --stride 768 384] [--aug_pred --scales 0.75 1.0 1.25 --flip_horizontal] \
        [--custom_color 0 0 0 255 0 0 ...]

Writes ``<save_dir>/pseudo_color_prediction/<name>.png`` (palette PNG) and
``<save_dir>/added_prediction/<name>.jpg`` (image blended with the prediction); with
``--format cityscapes``, ``<save_dir>/cityscapes_results/<name>.png`` (Cityscapes label ids, what
the benchmark server takes; the model must predict the 19 train ids).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from zoo.utils.cli import add_common_args, add_test_config_args, add_verbose_arg, build_parser, main_wrapper  # noqa: E402,E501


def parse_args(argv=None):
    p = build_parser('Predict images with a segmentation model.')
    add_common_args(p, model_path_required=True)
    p.add_argument('--image_path', required=True, help='an image, a folder of images or a .txt list')
    p.add_argument('--save_dir', default='output/result', help='output folder')
    p.add_argument('--custom_color', nargs='+', type=int, default=None,
                   help='palette as r g b triples, one per class (default: the dataset\'s palette)')
    p.add_argument('--format', default='paddleseg', choices=['paddleseg', 'cityscapes'],
                   help='paddleseg: palette PNG + overlay; cityscapes: label-id PNGs for the benchmark server')
    add_test_config_args(p, aug_flag='--aug_pred')
    add_verbose_arg(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from zoo.utils.quiet import quiet_third_party
    quiet_third_party(args.verbose)
    from zoo.builder import dataset_num_classes
    from zoo.datasets.meta import config_meta
    from zoo.engine.inference import parse_test_config
    from zoo.engine.predictor import load_trained_model, predict
    from zoo.engine.visual import get_palette
    from zoo.utils.cli import set_device, test_config_overrides
    from zoo.utils.config import Config
    cfg = Config(args.config, opts=args.opts)
    cfg.require('val_dataset')
    test_kwargs = parse_test_config(cfg.test_config, overrides=test_config_overrides(args),
                                    where=cfg.where('test_config'))
    transforms = cfg.dic['val_dataset'].get('transforms') or []
    set_device(args.device)
    model = load_trained_model(cfg, args.model_path)
    num_classes = getattr(model, 'num_classes', None) or cfg.get('model.num_classes') or dataset_num_classes(cfg)
    if num_classes is None:
        raise cfg.error('model.num_classes', 'cannot tell the number of classes (set model.num_classes)')
    palette = get_palette(int(num_classes), config_meta(cfg), args.custom_color)  # the config's class colours
    written = predict(model, args.image_path, transforms, args.save_dir, palette, test_kwargs,
                      output_format=args.format)
    print(f'wrote {len(written)} prediction(s) to {args.save_dir}')


if __name__ == '__main__':
    main_wrapper(main)
