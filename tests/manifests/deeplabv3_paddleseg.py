"""Manifest + parity for DeepLabV3 (ResNet_vd) from PaddleSeg 2.8. NOT part of ``make test``.

Run in the scratch environment that has PaddleSeg 2.8.0 (paddlepaddle 3.2.2, numpy<2):

    /tmp/pdsegenv/bin/python tests/manifests/deeplabv3_paddleseg.py            # manifest only
    /tmp/pdsegenv/bin/python tests/manifests/deeplabv3_paddleseg.py --parity   # + output parity

It builds PaddleSeg's own ``DeepLabV3(ResNet50_vd/ResNet101_vd(output_stride=8,
multi_grid=[1, 2, 4]), aspp_ratios=[1, 12, 24, 36], aspp_out_channels=256)`` (the published
configs) and writes every state-dict name and shape to ``deeplabv3_paddleseg.json``, which
``tests/test_deeplabv3.py`` maps onto our model through the importer.

``--parity`` additionally gives the PaddleSeg model random weights (BN affine random, BN
statistics calibrated by one train-mode pass with momentum 0 on a 1x3x128x256 input), converts
its state dict with our importer into the model built from our config, and compares eval-mode
logits on a 1x3x512x1024 input; the max abs differences are stored in the JSON.

``--outputs`` (PaddleSeg only, not our code) writes ``deeplabv3_paddleseg.npz``: PaddleSeg's
ResNet50_vd DeepLabV3 built in float64 with seeded weights (``seeded.py``), a seeded 1x3x128x128
input and its logits, which ``tests/test_deeplabv3.py`` compares with ours on every run:

    /work/scratch/envs/paddleseg/bin/python tests/manifests/deeplabv3_paddleseg.py --outputs
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import paddle

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, 'deeplabv3_paddleseg.json')

CASES = {
    # name: (our config, PaddleSeg backbone, num_classes)
    'deeplabv3_resnet50_os8_cityscapes': ('configs/deeplabv3/deeplabv3_resnet50-vd-os8_cityscapes_512x1024_80k.yml',
                                          'ResNet50_vd', 19),
    'deeplabv3_resnet101_os8_cityscapes': ('configs/deeplabv3/deeplabv3_resnet101-vd-os8_cityscapes_512x1024_80k.yml',
                                           'ResNet101_vd', 19),
    'deeplabv3_resnet50_os8_voc12aug': ('configs/deeplabv3/deeplabv3_resnet50-vd-os8_voc12aug_512x512_40k.yml',
                                        'ResNet50_vd', 21),
    'deeplabv3_resnet101_os8_voc12aug': ('configs/deeplabv3/deeplabv3_resnet101-vd-os8_voc12aug_512x512_40k.yml',
                                         'ResNet101_vd', 21),
}


def build_reference(backbone_name, num_classes):
    from paddleseg.models import DeepLabV3
    from paddleseg.models.backbones import resnet_vd
    backbone = getattr(resnet_vd, backbone_name)(output_stride=8, multi_grid=[1, 2, 4])
    return DeepLabV3(num_classes=num_classes, backbone=backbone, backbone_indices=[3],
                     aspp_ratios=[1, 12, 24, 36], aspp_out_channels=256, align_corners=False)


def randomize_and_calibrate(model, seed):
    rng = np.random.default_rng(seed)
    bns = [m for m in model.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    for bn in bns:
        c = bn.weight.shape[0]
        bn.weight.set_value(rng.uniform(0.5, 1.5, c).astype('float32'))
        bn.bias.set_value(rng.normal(0, 0.1, c).astype('float32'))
        bn._momentum = 0.0  # running stats := this batch's statistics
    model.train()
    with paddle.no_grad():
        model(paddle.to_tensor(rng.normal(0, 1, (1, 3, 128, 256)).astype('float32')))
    for bn in bns:
        bn._momentum = 0.9
    model.eval()


def parity(name, config, ref, num_classes):
    sys.path.insert(0, ROOT)
    import zoo
    from zoo.models.convert import convert
    from zoo.utils.config import Config
    ours = zoo.build_model(Config(os.path.join(ROOT, config),
                                  opts=['model.backbone.pretrained=null', f'model.num_classes={num_classes}']))
    randomize_and_calibrate(ref, seed=0)
    sd = {k: v.numpy() for k, v in ref.state_dict().items()}
    ours.set_state_dict(convert(ours, 'paddleseg', sd))
    ours.eval()
    x = paddle.to_tensor(np.random.default_rng(1).normal(0, 1, (1, 3, 512, 1024)).astype('float32'))
    with paddle.no_grad():
        t = time.time()
        a = ref(x)[0].numpy()
        b = ours(x)[0].numpy()
    diff = float(np.abs(a - b).max())
    print(f'{name}: max abs diff {diff:.3e} (logit range {a.min():.2f}..{a.max():.2f}, '
          f'argmax agreement {(a.argmax(1) == b.argmax(1)).mean():.6f}, {time.time() - t:.0f}s)')
    return {'input': [1, 3, 512, 1024], 'max_abs_diff': diff, 'logit_abs_max': float(np.abs(a).max()),
            'argmax_agreement': float((a.argmax(1) == b.argmax(1)).mean())}


def stored_outputs(name='deeplabv3_resnet50_os8_cityscapes'):
    import paddleseg
    from seeded import fill_paddle_model, save_outputs, seeded_input
    config, backbone, num_classes = CASES[name]
    paddle.set_device('cpu')
    paddle.set_default_dtype('float64')
    ref = build_reference(backbone, num_classes)
    meta = {'reference': f'paddleseg {paddleseg.__version__} DeepLabV3 + {backbone}', 'paddle': paddle.__version__,
            'config': config, 'num_classes': num_classes, 'weights': {'model': fill_paddle_model(ref)}}
    ref.eval()
    inputs = {'image': seeded_input((1, 3, 128, 128), seed=1)}
    with paddle.no_grad():
        outputs = {'logits': ref(paddle.to_tensor(inputs['image']))[0].numpy()}
    path = OUT.replace('.json', '.npz')
    save_outputs(path, inputs, outputs, meta)
    print('wrote', path, {k: v.shape for k, v in outputs.items()})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--outputs', action='store_true', help='write deeplabv3_paddleseg.npz (see the docstring)')
    ap.add_argument('--parity', action='store_true')
    ap.add_argument('--cases', nargs='*', default=list(CASES))
    args = ap.parse_args()
    if args.outputs:
        return stored_outputs()
    import paddleseg
    paddle.set_device('cpu')
    paddle.seed(0)
    manifest = json.load(open(OUT)) if os.path.isfile(OUT) else {}
    manifest['_source'] = (f'paddleseg {paddleseg.__version__} (paddlepaddle {paddle.__version__}): '
                           'paddleseg.models.DeepLabV3 + backbones.resnet_vd, built by '
                           'tests/manifests/deeplabv3_paddleseg.py')
    for name in args.cases:
        config, backbone, num_classes = CASES[name]
        ref = build_reference(backbone, num_classes)
        entry = {'config': config, 'num_classes': num_classes,
                 'params': {k: list(v.shape) for k, v in ref.state_dict().items()}}
        old = manifest.get(name, {})
        if 'parity' in old:
            entry['parity'] = old['parity']
        if args.parity:
            entry['parity'] = parity(name, config, ref, num_classes)
        manifest[name] = entry
        print(name, len(entry['params']), 'tensors')
    # re-read before writing: several cases may be run by parallel processes
    current = json.load(open(OUT)) if os.path.isfile(OUT) else {}
    current.update({k: v for k, v in manifest.items() if k in args.cases or k == '_source'})
    with open(OUT, 'w') as f:
        json.dump(current, f, indent=1, sort_keys=True)


if __name__ == '__main__':
    main()
