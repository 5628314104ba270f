"""Import a checkpoint trained with another project into this zoo's parameter names.

    python tools/convert_weights.py --from paddleseg \\
        --config configs/deeplabv3/deeplabv3_resnet50-vd-os8_cityscapes_512x1024_80k.yml \\
        --input model.pdparams --output output/deeplabv3_r50_os8.pdparams
    python tools/convert_weights.py --from mmseg \\
        --config configs/deeplabv3/deeplabv3_r50-d8_cityscapes_512x1024_80k.yml \\
        --input deeplabv3_r50-d8_512x1024_80k_cityscapes_20200606_113404-b92cfdd4.pth --output r50_d8.pdparams

    python tools/convert_weights.py --list       # the weights table: names, URLs, sources, reported mIoU

The model named by the config decides the importer (each model file registers its own,
``zoo.models.convert``); ``--input`` may be a weights-table name (its source is then known) and
``--from`` is detected from the key names when omitted. The conversion is strict: every source
tensor used or dropped on purpose, every model parameter filled, every shape equal, else one
error line and exit 2. PyTorch files (``.pth``) are read with torch when installed
(``pip install -e .[convert]``, ``weights_only=True``), Paddle files with the project's
allow-list unpickler; weights holding NaN/inf are refused. The output is written atomically
(mode from the umask, like any new file) and loads with
``model.pretrained: OUT.pdparams`` or ``--model_path``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from zoo.utils.cli import ArgumentParser, main_wrapper  # noqa: E402


def parse_args(argv=None):
    from zoo.models.convert import SOURCES
    p = ArgumentParser(description='Convert a foreign checkpoint into this zoo\'s names.')
    p.add_argument('--from', dest='source', choices=sorted(SOURCES),
                   help='project the checkpoint comes from (default: the weights table, else detected from its keys)')
    p.add_argument('--config', help='YAML config of the target model')
    p.add_argument('--input', help='source checkpoint: a weights-table name (see --list), a URL or a file')
    p.add_argument('--output', help='where to write the converted .pdparams')
    p.add_argument('--ignore', nargs='*', default=[],
                   help='source key prefixes to drop on purpose (e.g. an unused classifier)')
    p.add_argument('--opts', nargs='+', default=[], help='config overrides: key.subkey=value ...')
    p.add_argument('--list', action='store_true', help='print the weights table (Markdown) and exit')
    args = p.parse_args(argv)
    if not args.list and not (args.config and args.input and args.output):
        p.error('--config, --input and --output are required (or --list)')
    return args


def build_target(config, opts=()):
    """The config's model with names/shapes only (no weight init, no pretrained download)."""
    import paddle

    import zoo
    from zoo.models.weights import without_pretrained
    from zoo.utils.config import Config
    with paddle.LazyGuard():
        return zoo.build_model(without_pretrained(Config(config, opts=list(opts))))


def main(argv=None):
    args = parse_args(argv)
    from zoo.models.convert import convert_checkpoint
    from zoo.models.weights import weights_markdown
    if args.list:
        print(weights_markdown(), end='')
        return 0
    if os.path.isdir(args.output):  # fail before the slow part (building the model)
        from zoo.utils.atomic import WriteError
        raise WriteError(f'--output {args.output} is a folder; give the file to write, e.g. '
                         f'{os.path.join(args.output, "model.pdparams")}')
    s = convert_checkpoint(build_target(args.config, args.opts), args.input, args.output, args.source, args.ignore)
    print(f'{s["source"]} -> {s["model"]}: {s["source_tensors"]} source tensors, '
          f'{len(s["dropped"])} dropped ({len(s["ignored"])} by --ignore), {s["converted_tensors"]} tensors '
          f'({s["values"]:,} values) written to {s["output"]}')
    return 0


if __name__ == '__main__':
    main_wrapper(main)
