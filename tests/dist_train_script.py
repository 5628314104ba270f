"""Run by test_distributed.py under ``paddle.distributed.launch --nproc_per_node 2`` (CPU, gloo)."""
import os
import sys

import paddle

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _tiny import tiny_config  # noqa: E402
from zoo.engine.trainer import Trainer  # noqa: E402
from zoo.utils.config import Config  # noqa: E402

root, out = sys.argv[1], sys.argv[2]
paddle.set_device('cpu')
t = Trainer(Config(tiny_config(root, iters=4, batch_size=2)), save_dir=out, seed=1, save_interval=4, do_eval=True)
t.train()
rank = paddle.distributed.get_rank()
paddle.save(t.model.state_dict(), os.path.join(out, f'rank{rank}.pdparams'))
print(f'rank {rank} of {paddle.distributed.get_world_size()} done')
