"""Import a checkpoint trained with another project into this zoo's parameter names.

    python tools/convert_weights.py --from paddleseg \\
        --config configs/deeplabv3/deeplabv3_resnet50-vd-os8_cityscapes_512x1024_80k.yml \\
        --input model.pdparams --output output/deeplabv3_r50_os8.pdparams
    python tools/convert_weights.py --from mmseg \\
        --config configs/deeplabv3/deeplabv3_r50-d8_cityscapes_512x1024_80k.yml \\
        --input deeplabv3_r50-d8_512x1024_80k_cityscapes_20200606_113404-b92cfdd4.pth --output r50_d8.pdparams

The model named by the config decides the importer (each model file registers its own,
``zoo.models.convert``). The conversion is strict: every source tensor used, every model
parameter filled, every shape equal, else one error line and exit 2. PyTorch files (``.pth``)
are read with torch when installed (``pip install -e .[convert]``, ``weights_only=True``), Paddle
files with the project's allow-list unpickler; weights holding NaN/inf are refused. The output is
written atomically (mode from the umask, like any new file) and loads with
``model.pretrained: OUT.pdparams`` or ``--model_path``.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from zoo.utils.cli import main_wrapper  # noqa: E402


def parse_args(argv=None):
    from zoo.models.convert import SOURCES
    p = argparse.ArgumentParser(description='Convert a foreign checkpoint into this zoo\'s names.')
    p.add_argument('--from', dest='source', required=True, choices=SOURCES, help='project the checkpoint comes from')
    p.add_argument('--config', required=True, help='YAML config of the target model')
    p.add_argument('--input', required=True, help='source checkpoint (.pdparams, .pth, or a URL)')
    p.add_argument('--output', required=True, help='where to write the converted .pdparams')
    p.add_argument('--ignore', nargs='*', default=[],
                   help='source key prefixes to drop on purpose (e.g. an unused classifier)')
    p.add_argument('--opts', nargs='+', default=[], help='config overrides: key.subkey=value ...')
    return p.parse_args(argv)


def build_target(config, opts=()):
    """The config's model with names/shapes only (no weight init, no pretrained download)."""
    import paddle

    import zoo
    from zoo.utils.config import Config
    cfg = Config(config, opts=list(opts))
    model_cfg = cfg.dic.get('model', {})
    model_cfg['pretrained'] = None
    backbone = model_cfg.get('backbone')
    if isinstance(backbone, dict) and 'pretrained' in backbone:
        backbone['pretrained'] = None
    with paddle.LazyGuard():
        return zoo.build_model(cfg)


def convert_file(source, config, input_path, output, ignore=(), opts=()):
    """Convert ``input_path`` and write ``output``; returns a summary dict."""
    import numpy as np
    import paddle

    from zoo.models.convert import convert
    from zoo.utils.atomic import WriteError
    from zoo.utils.checkpoint import atomic_save, read_state_dict, require_finite

    if os.path.isdir(output):  # fail before the slow part
        raise WriteError(f'--output {output} is a folder; give the file to write, e.g. '
                         f'{os.path.join(output, "model.pdparams")}')
    model = build_target(config, opts)
    src = read_state_dict(input_path, f'{source} checkpoint')
    require_finite(src, input_path)
    src = {k: (v.numpy() if hasattr(v, 'numpy') else np.asarray(v)) for k, v in src.items()}
    out = convert(model, source, src, ignore_source=tuple(ignore))
    atomic_save({k: paddle.to_tensor(v) for k, v in out.items()}, output)
    ignored = [k for k in src if k.startswith(tuple(ignore))] if ignore else []
    return {'model': type(model).__name__, 'source_tensors': len(src), 'ignored': ignored,
            'converted_tensors': len(out), 'values': int(sum(np.asarray(v).size for v in out.values())),
            'output': output}


def main(argv=None):
    args = parse_args(argv)
    s = convert_file(args.source, args.config, args.input, args.output, args.ignore, args.opts)
    print(f'{args.source} -> {s["model"]}: {s["source_tensors"]} source tensors, '
          f'{len(s["ignored"])} ignored by --ignore, {s["converted_tensors"]} tensors '
          f'({s["values"]:,} values) written to {s["output"]}')
    return 0


if __name__ == '__main__':
    main_wrapper(main)
