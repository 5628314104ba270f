"""Train a model: ``python tools/train.py --config configs/<model>/<config>.yml --do_eval --use_vdl``.

Distributed: ``python -m paddle.distributed.launch --gpus 0,1,2,3 tools/train.py --config ...``
(``--nproc_per_node 2`` with ``--device cpu`` runs two CPU processes).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from zoo.utils.cli import ArgumentParser, add_verbose_arg, main_wrapper  # noqa: E402


def parse_args(argv=None):
    p = ArgumentParser(description='Train a segmentation model.')
    p.add_argument('--config', required=True, help='YAML config file')
    p.add_argument('--opts', nargs='+', default=[], help='overrides: key.subkey=value ...')
    p.add_argument('--iters', type=int, help='total iterations (overrides iters)')
    p.add_argument('--batch_size', type=int, help='batch size per GPU/process (overrides batch_size)')
    p.add_argument('--learning_rate', type=float, help='base learning rate (overrides lr_scheduler.learning_rate)')
    p.add_argument('--save_dir', default='output', help='where checkpoints and VisualDL logs go')
    p.add_argument('--save_interval', type=int, help='save (and evaluate) every N iterations')
    p.add_argument('--eval_interval', type=int, help='evaluate every N iterations (default: save_interval)')
    p.add_argument('--log_iters', type=int, help='log every N iterations')
    p.add_argument('--keep_checkpoint_max', type=int, help='keep the last K iter_N checkpoints')
    p.add_argument('--resume_model', help='checkpoint folder (save_dir/iter_N) to resume from')
    p.add_argument('--do_eval', action='store_true', help='evaluate while training; keep best_model/')
    p.add_argument('--use_vdl', action='store_true', help='write VisualDL logs to save_dir')
    p.add_argument('--num_workers', type=int, default=0, help='DataLoader worker processes')
    p.add_argument('--seed', type=int, default=0, help='random seed (data order, augmentation, init)')
    p.add_argument('--skip_data_check', action='store_true',
                   help='skip the pre-flight scan of every image and label (zoo/datasets/scan.py)')
    p.add_argument('--device', choices=['cpu', 'gpu'], help='default: gpu if Paddle was built with CUDA')
    p.add_argument('--precision', default='fp32', choices=['fp32', 'fp16', 'bf16'], help='AMP on GPU')
    p.add_argument('--amp_level', default='O1', choices=['O1', 'O2'])
    p.add_argument('--use_ema', action='store_true',
                   help='keep an exponential moving average of the weights; evaluate it too, and save it as '
                        'best_model when it scores higher')
    p.add_argument('--ema_decay', type=float, default=0.999, help='EMA: ema = decay * ema + (1 - decay) * weights')
    add_verbose_arg(p)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from zoo.utils.quiet import quiet_third_party
    quiet_third_party(args.verbose)
    from zoo.engine.trainer import Trainer
    from zoo.utils.config import Config
    cfg = Config(args.config, opts=args.opts, learning_rate=args.learning_rate, batch_size=args.batch_size,
                 iters=args.iters)
    trainer = Trainer(cfg, save_dir=args.save_dir, do_eval=args.do_eval, use_vdl=args.use_vdl,
                      save_interval=args.save_interval, log_iters=args.log_iters,
                      keep_checkpoint_max=args.keep_checkpoint_max, num_workers=args.num_workers,
                      resume_model=args.resume_model, seed=args.seed, precision=args.precision,
                      amp_level=args.amp_level, device=args.device, eval_interval=args.eval_interval,
                      skip_data_check=args.skip_data_check, use_ema=args.use_ema, ema_decay=args.ema_decay)
    trainer.train()  # logs its own summary (also into save_dir/train.log)


if __name__ == '__main__':
    main_wrapper(main)
