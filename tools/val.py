"""Evaluate trained weights on the config's validation set (PaddleSeg's ``tools/val.py`` flags).

    python tools/val.py --config configs/fast_scnn/fast_scnn_cityscapes_512x1024_160k.yml \
        --model_path output/best_model/model.pdparams [--is_slide --crop_size 1024 512 --stride 768 384] \
        [--aug_eval --scales 0.75 1.0 1.25 --flip_horizontal] [--num_workers 2] [--save_dir output/val]

Prints the per-class table and the summary (percent, two decimals). With ``--save_dir``:
``metrics.json``, ``confusion_matrix.png``, ``per_class_iou.png`` and ``samples.png`` there.

Distributed: ``python -m paddle.distributed.launch --gpus 0,1 tools/val.py ...``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from zoo.utils.cli import add_common_args, add_test_config_args, add_verbose_arg, build_parser, main_wrapper  # noqa: E402,E501


def parse_args(argv=None):
    p = build_parser('Evaluate a segmentation model (mIoU, aAcc, mAcc, per-class IoU/Acc).')
    add_common_args(p, model_path_required=True)
    add_test_config_args(p, aug_flag='--aug_eval')
    p.add_argument('--save_dir', default=None,
                   help='write metrics.json, confusion_matrix.png, per_class_iou.png, samples.png here')
    p.add_argument('--num_vis', type=int, default=3, help='images shown in samples.png (with --save_dir)')
    add_verbose_arg(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from zoo.utils.quiet import quiet_third_party
    quiet_third_party(args.verbose)
    from zoo.engine.evaluator import evaluate
    from zoo.engine.inference import parse_test_config
    from zoo.engine.predictor import load_trained_model
    from zoo.utils.cli import set_device, test_config_overrides
    from zoo.utils.config import Config
    import zoo
    cfg = Config(args.config, opts=args.opts)
    cfg.require('val_dataset')
    test_kwargs = parse_test_config(cfg.test_config, overrides=test_config_overrides(args),
                                    where=cfg.where('test_config'))
    set_device(args.device)
    import paddle.distributed as dist
    if dist.get_world_size() > 1:
        from zoo.utils.quiet import init_parallel_env
        init_parallel_env()
    model = load_trained_model(cfg, args.model_path)
    dataset = zoo.build_dataset(cfg, 'val')
    identity = None
    if args.save_dir:
        from zoo.utils.download import file_sha256
        local = os.path.isfile(args.model_path)
        identity = {'model': {'type': type(model).__name__, 'config': args.config, 'opts': list(args.opts),
                              'weights': os.path.abspath(args.model_path) if local else args.model_path,
                              **({'weights_sha256': file_sha256(args.model_path)} if local else {})},
                    'protocol': {'during_training': False}}
    evaluate(model, dataset, test_kwargs, num_workers=args.num_workers, print_detail=True, save_dir=args.save_dir,
             identity=identity, num_vis=args.num_vis if args.save_dir else 0)


if __name__ == '__main__':
    main_wrapper(main)
