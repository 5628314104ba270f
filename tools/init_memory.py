"""Initialise an MCIBI memory by clustering the features of a trained network
(sssegmentation's ``initmemory.py``; see ``zoo/models/mcibi_memory_init.py``).

    python tools/init_memory.py --config configs/mcibi/mcibi_r50-d8_ade20k_512x512_130e.yml \
        --model_path output/iter_8000/model.pdparams --save_path init_memory.npy [--max_images 2000]

Then train with ``--opts model.memory_init=init_memory.npy``. The images are read with the
config's ``val_dataset`` transforms (no augmentation) from the ``--split`` set (default train).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from zoo.utils.cli import add_common_args, build_parser, main_wrapper  # noqa: E402


def parse_args(argv=None):
    p = build_parser('Initialise the MCIBI memory from a trained model by clustering per-class features.')
    add_common_args(p, model_path_required=True)
    p.add_argument('--save_path', default='init_memory.npy', help='output .npy [classes, feats_per_cls, channels]')
    p.add_argument('--split', choices=['train', 'val'], default='train', help='images to read')
    p.add_argument('--max_images', type=int, default=None, help='read at most this many images')
    p.add_argument('--num_feats_per_cls', type=int, default=None, help='default: the model option')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import copy

    import numpy as np

    import zoo
    from zoo.engine.predictor import load_trained_model
    from zoo.models.mcibi_memory_init import init_memory
    from zoo.utils.cli import set_device
    from zoo.utils.config import Config
    from zoo.utils.errors import ConfigError
    cfg = Config(args.config, opts=args.opts)
    set_device(args.device)
    model = load_trained_model(cfg, args.model_path)
    if type(model).__name__ != 'MCIBI':
        raise ConfigError(f'{args.config}: model.type is {type(model).__name__}, expected MCIBI')
    cfg.require('val_dataset')
    ds_cfg = copy.deepcopy(cfg.dic['val_dataset'])
    ds_cfg['mode'] = args.split
    dataset = zoo.build_dataset({**cfg.dic, 'val_dataset': ds_cfg}, 'val')
    n = args.num_feats_per_cls or model.memory_module.num_feats_per_cls
    memory = init_memory(model, dataset, num_feats_per_cls=n, max_images=args.max_images,
                         ignore_index=model.ignore_index)
    np.save(args.save_path, memory)
    seen = int((np.abs(memory).sum((1, 2)) > 0).sum())
    print(f'wrote {args.save_path}: memory {list(memory.shape)}, {seen}/{memory.shape[0]} classes seen')


if __name__ == '__main__':
    main_wrapper(main)
