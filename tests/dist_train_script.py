"""Run by test_distributed.py, alone or under ``paddle.distributed.launch`` (CPU, gloo).

    dist_train_script.py DATA_ROOT SAVE_DIR [--iters 4] [--stop_at K] [--resume_model DIR]
                         [--save_interval N] [--do_eval]

``--stop_at K`` ends the run after iteration K of an ``--iters`` schedule (an interrupted run:
the LR schedule is the full run's). Each rank writes its final weights to ``SAVE_DIR/rankR.pdparams``.
"""
import argparse
import os
import sys

import paddle

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import zoo  # noqa: E402,F401
from _tiny import tiny_config  # noqa: E402
from zoo.engine.trainer import Trainer  # noqa: E402
from zoo.utils.config import Config  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument('root')
p.add_argument('out')
p.add_argument('--iters', type=int, default=4)
p.add_argument('--stop_at', type=int, default=None)
p.add_argument('--resume_model', default=None)
p.add_argument('--save_interval', type=int, default=None)
p.add_argument('--do_eval', action='store_true')
args = p.parse_args()
paddle.set_device('cpu')
t = Trainer(Config(tiny_config(args.root, iters=args.iters, batch_size=2)), save_dir=args.out, seed=1,
            save_interval=args.save_interval or args.iters, resume_model=args.resume_model, do_eval=args.do_eval)
if args.stop_at:
    t.iters = args.stop_at
result = t.train()
rank = paddle.distributed.get_rank()
paddle.save(t.model.state_dict(), os.path.join(args.out, f'rank{rank}.pdparams'))
print(f'rank {rank} of {paddle.distributed.get_world_size()} done at iteration {result["iteration"]}')
