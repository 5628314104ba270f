"""Write ``pixels_mmseg.json``: what mmsegmentation 1.2.2's own pipelines feed the network.

Run by hand in the mmseg reference environment (mmsegmentation 1.2.2 on mmcv-lite 2.1.0, torch
2.13 CPU, OpenCV 5.0.0; no zoo, no paddle), from the repository root:

    /work/scratch/envs/mmseg/bin/python tests/manifests/pixels_mmseg.py

``tests/test_pixel_parity.py`` re-runs our side against it. On generated PNG images
(``pixel_cases.make_image``) it records, through mmseg's own classes built from mmseg's own
configs (``mmseg/.mim/configs``):

* ``val``: for each reference test pipeline (``pixel_cases.REFERENCES``, mmseg keys) and each
  size of ``pixel_cases.SIZES``: the network input, ``test_pipeline`` (LoadImageFromFile,
  Resize; LoadAnnotations left out, it does not touch the image) + PackSegInputs +
  the model's ``SegDataPreProcessor`` in test mode, as ``pixel_cases.digests``;
* ``tta``: the network input of every pass of the config's ``tta_pipeline`` (TestTimeAug:
  Resize(scale_factor=r, keep_ratio=True) x RandomFlip(prob 0 / 1)) + the preprocessor, in
  mmseg's order (scales outer, flips inner), with the pass's scale factor and flip;
* ``train``: the Fast-SCNN Cityscapes ``train_pipeline``'s RandomResize + RandomCrop (after
  LoadImageFromFile + LoadAnnotations) of a generated 1024x2048 pair with ``np.random.seed(s)``
  for 6 seeds (image and label SHA-256, RGB order), and its PhotoMetricDistortion of a generated
  96x128 image with ``np.random.seed(s)`` for 24 seeds.
"""
import os
import random
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, 'pixels_mmseg.json')
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, 'tools', 'parity'))

import pixel_cases as pc  # noqa: E402
from mmseg_env import mmseg_config  # noqa: E402

CONFIGS = {'mmseg/cityscapes': 'fastscnn/fast_scnn_8xb4-160k_cityscapes-512x1024.py',
           'mmseg/cityscapes_769x769': 'dmnet/dmnet_r50-d8_4xb2-80k_cityscapes-769x769.py',
           'mmseg/ade20k': 'dmnet/dmnet_r50-d8_4xb4-80k_ade20k-512x512.py'}
TRAIN_SEEDS = range(6)
PMD_SEEDS = range(24)


def rgb(bgr):
    return np.ascontiguousarray(bgr[:, :, ::-1])


def preprocess(preprocessor, packed):
    out = preprocessor({'inputs': [packed['inputs']], 'data_samples': [packed['data_samples']]}, training=False)
    return out['inputs'][0].numpy()


def val_inputs(cfg, tmp, key):
    from mmcv.transforms import Compose
    from mmseg.registry import MODELS
    steps = [t for t in cfg.test_pipeline if t['type'] != 'LoadAnnotations']
    pipeline = Compose(steps)
    pre = MODELS.build(cfg.model.data_preprocessor)
    mean, std = cfg.model.data_preprocessor['mean'], cfg.model.data_preprocessor['std']
    names = [t['type'] + (f"(scale={t['scale']}, keep_ratio={t['keep_ratio']})" if t['type'] == 'Resize' else '')
             for t in steps]
    out = {'pipeline': names + ['SegDataPreProcessor'], 'mean': mean, 'std': std}
    out.update(pc.record_val(key, tmp, lambda png: preprocess(pre, pipeline({'img_path': png})), mean, std))
    return out


def tta_inputs(cfg, tmp, key):
    from mmcv.transforms import Compose
    from mmseg.registry import MODELS
    spec = pc.TTA[key]
    h, w = spec['size']
    path = pc.write_png(os.path.join(tmp, f'tta_{h}x{w}.png'), pc.make_image(h, w))
    lab = pc.write_png(os.path.join(tmp, f'tta_{h}x{w}_label.png'), pc.make_label(h, w))
    pipeline = Compose(cfg.tta_pipeline)
    pre = MODELS.build(cfg.model.data_preprocessor)
    mean, std = cfg.model.data_preprocessor['mean'], cfg.model.data_preprocessor['std']
    aug = pipeline({'img_path': path, 'seg_map_path': lab, 'reduce_zero_label': False, 'seg_fields': []})
    passes = []
    for inputs, sample in zip(aug['inputs'], aug['data_samples']):
        x = preprocess(pre, {'inputs': inputs, 'data_samples': sample})
        passes.append({'scale_factor': [float(v) for v in sample.scale_factor], 'flip': bool(sample.flip),
                       **pc.digests(x, mean, std)})
    ratios = [r for t in cfg.tta_pipeline[1]['transforms'][0] for r in [t['scale_factor']]]
    assert tuple(ratios) == spec['scales'], ratios
    return {'size': [h, w], 'scales': ratios, 'flips': [False, True], 'passes': passes}


def train_steps(cfg, tmp):
    from mmcv.transforms import Compose
    from mmseg.registry import TRANSFORMS
    steps = {t['type']: t for t in cfg.train_pipeline}
    crop = Compose([steps['LoadImageFromFile'], steps['LoadAnnotations'], steps['RandomResize'],
                    steps['RandomCrop']])
    h, w = 1024, 2048
    path = pc.write_png(os.path.join(tmp, 'train.png'), pc.make_image(h, w, seed=1))
    lab = pc.write_png(os.path.join(tmp, 'train_label.png'), pc.make_label(h, w))
    out = {'size': [h, w], 'pipeline': [str(steps[k]) for k in ('RandomResize', 'RandomCrop')], 'resize_crop': {}}
    for s in TRAIN_SEEDS:
        np.random.seed(s)
        random.seed(s)
        r = crop({'img_path': path, 'seg_map_path': lab, 'reduce_zero_label': False, 'seg_fields': []})
        out['resize_crop'][str(s)] = {'img_shape': list(r['img'].shape), 'img_sha256': pc.sha256(rgb(r['img'])),
                                      'label_sha256': pc.sha256(r['gt_seg_map'])}
    pmd = TRANSFORMS.build(steps['PhotoMetricDistortion'])
    small = pc.make_image(96, 128, seed=2)
    out['photometric'] = {'size': [96, 128], 'image_seed': 2, 'outputs': {}}
    for s in PMD_SEEDS:
        np.random.seed(s)
        random.seed(s)
        r = pmd.transform({'img': rgb(small).copy()})
        out['photometric']['outputs'][str(s)] = pc.sha256(rgb(r['img']))
    return out


def main():
    import cv2
    import mmcv
    import mmengine
    import mmseg
    import torch
    cv2.setNumThreads(0)
    val, tta = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, rel in CONFIGS.items():
            cfg = mmseg_config(rel)
            val[key] = {'reference': pc.REFERENCES[key], **val_inputs(cfg, tmp, key)}
            if key in pc.TTA:
                tta[key] = tta_inputs(cfg, tmp, key)
        train = train_steps(mmseg_config(CONFIGS['mmseg/cityscapes']), tmp)
    pc.save_manifest(OUT, 'tests/manifests/pixels_mmseg.py',
                     {'mmsegmentation': mmseg.__version__, 'mmcv': mmcv.__version__, 'mmengine': mmengine.__version__,
                      'torch': torch.__version__, 'opencv': cv2.__version__},
                     configs=CONFIGS, val=val, tta=tta, train=train)


if __name__ == '__main__':
    main()
