"""The same pixels into the network as the reference implementations (issue 18, "pixels in").

For every config of ``configs/`` its validation input (``Dataset.__getitem__``: read, the
config's val transforms, CHW float32) on generated images of two sizes per dataset equals the
input the config's reference pipeline builds from the same PNG file: mmsegmentation 1.2.2,
sssegmentation 1.7.0, PaddleSeg 2.8.0 or RegSeg, run by ``tests/manifests/pixels_*.py`` in
their own environments and stored as digests (``tests/manifests/pixel_cases.py``):

* in uint8 terms, exactly (the input brought back to 0-255 and rounded hashes the same);
* as float32 tensors, bit for bit where the reference normalizes with the same float32
  arithmetic (mmseg's ``(x - mean) / std``), otherwise within the float32 rounding of its other
  formula (PaddleSeg ``(x / 255 - 0.5) / 0.5``, sssegmentation ``(x - mean) * (1 / std)``,
  RegSeg ``(x / 255 - mean) / std``), measured on 257 fixed positions.

Also mmseg's test-time augmentation inputs (every scale x flip pass of its ``tta_pipeline``,
rebuilt by our inference routine from the loaded uint8 image) and its training resize + crop and
photometric distortion (the same random draws give the same bytes).
"""
import json
import os
import random

import numpy as np
import paddle
import pytest

import zoo  # noqa: F401  (registers every transform and dataset)
from zoo.datasets.base import Dataset
from zoo.datasets import transforms as T
from zoo.engine.inference import inference
from zoo.utils.config import Config

from manifests import pixel_cases as pc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFESTS = os.path.join(REPO, 'tests', 'manifests')
REFERENCE_FILES = {'mmseg': 'pixels_mmseg.json', 'sssegmentation': 'pixels_sssegmentation.json',
                   'paddleseg': 'pixels_paddleseg.json', 'regseg': 'pixels_regseg.json'}
# max |float32 difference| allowed where the reference's normalization formula differs from ours
FLOAT_TOLERANCE = 1e-6


def manifest(family):
    with open(os.path.join(MANIFESTS, REFERENCE_FILES[family])) as f:
        return json.load(f)


def all_configs():
    out = []
    for folder in sorted(os.listdir(os.path.join(REPO, 'configs'))):
        if folder == '_base_' or not os.path.isdir(os.path.join(REPO, 'configs', folder)):
            continue
        for name in sorted(os.listdir(os.path.join(REPO, 'configs', folder))):
            if name.endswith('.yml'):
                out.append(f'configs/{folder}/{name}')
    return out


def test_every_config_has_a_declared_reference():
    assert sorted(pc.CONFIG_REFERENCE) == all_configs()
    assert {r for r in pc.CONFIG_REFERENCE.values() if r} <= set(pc.REFERENCES)


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """The generated PNG of every (dataset, size), written once."""
    root = tmp_path_factory.mktemp('pixels')
    paths = {}
    for dataset, sizes in pc.SIZES.items():
        for h, w in sizes:
            paths[dataset, (h, w)] = pc.write_png(str(root / f'{dataset}_{h}x{w}.png'), pc.make_image(h, w))
    return root, paths


_INPUTS = {}


def val_input(config, path, root):
    """Our network input for one image: the config's val dataset section, through Dataset
    (configs with the same val transforms share one computation)."""
    transforms = Config(os.path.join(REPO, config)).dic['val_dataset'].get('transforms')
    key = (json.dumps(transforms, sort_keys=True), path)
    if key not in _INPUTS:
        list_file = os.path.join(root, 'list.txt')
        with open(list_file, 'w') as f:
            f.write(os.path.basename(path) + '\n')
        ds = Dataset(str(root), transforms, num_classes=2, mode='val', val_path=list_file)
        img, _ = ds[0]
        norm = T.find_normalize(ds.transforms)
        _INPUTS[key] = img, norm.mean.tolist(), norm.std.tolist()
    return _INPUTS[key]


def compare(ours, ref, mean, std, exact_float):
    got = pc.digests(ours, mean, std)
    assert got['shape'] == ref['shape']
    assert got['pixels_sha256'] == ref['pixels_sha256'], 'differs in uint8 terms'
    gap = float(np.abs(np.asarray(got['input_sample']) - np.asarray(ref['input_sample'])).max())
    if exact_float:
        assert got['input_sha256'] == ref['input_sha256'], f'float32 input differs (sampled max {gap:.3g})'
    else:
        assert gap <= FLOAT_TOLERANCE
    return gap


CASES = [(config, ref) for config, ref in sorted(pc.CONFIG_REFERENCE.items()) if ref]


@pytest.mark.parametrize('config,reference', CASES, ids=[os.path.basename(c)[:-4] for c, _ in CASES])
def test_val_input_equals_the_reference_pipeline(config, reference, images):
    root, paths = images
    family = reference.split('/')[0]
    cases = manifest(family)['val'][reference]
    for h, w in pc.SIZES[pc.dataset_of(reference)]:
        ours, mean, std = val_input(config, paths[pc.dataset_of(reference), (h, w)], root)
        compare(ours, cases[pc.size_key(h, w)], mean, std, exact_float=family == 'mmseg')


class Recorder(paddle.nn.Layer):
    """Records each pass's input; returns 2-class logits at the input size."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.numpy()[0])
        return [paddle.zeros([x.shape[0], 2, x.shape[2], x.shape[3]])]


@pytest.mark.parametrize('reference,config', [
    ('mmseg/cityscapes', 'configs/fast_scnn/fast_scnn_cityscapes_512x1024_160k.yml'),
    ('mmseg/ade20k', 'configs/dmnet/dmnet_r50-d8_ade20k_512x512_80k.yml')])
def test_tta_inputs_are_mmseg_tta_pipeline(reference, config, images):
    """ms+flip through our inference routine, as the evaluator calls it: every pass's input is
    mmseg's (the loaded uint8 image rescaled by OpenCV with mmcv's sizes, then normalized)."""
    from zoo.datasets.base import read_image
    from zoo.engine.inference import parse_test_config
    root, paths = images
    ref = manifest('mmseg')['tta'][reference]
    cfg = Config(os.path.join(REPO, config))
    kwargs = parse_test_config(cfg.test_config, overrides={'aug_eval': True, 'scales': ref['scales'],
                                                           'flip_horizontal': True})
    assert kwargs['aug_resize'] == 'image'
    h, w = ref['size']
    image = read_image(paths[pc.dataset_of(reference), (h, w)])
    ours, mean, std = val_input(config, paths[pc.dataset_of(reference), (h, w)], root)
    model = Recorder()
    norm = T.Normalize(mean=mean, std=std)
    with paddle.no_grad():
        inference(model, paddle.to_tensor(ours[None]), ori_shape=(h, w), image=image, normalize=norm, **kwargs)
    assert len(model.inputs) == len(ref['passes'])
    for got, want in zip(model.inputs, ref['passes']):
        compare(got, want, mean, std, exact_float=True)


def test_train_resize_crop_and_photometric_are_mmseg_bytes():
    """The Fast-SCNN Cityscapes recipe's RandomRescale + RandomCrop and PhotoMetricDistortion,
    with mmseg's random draws (the same seeds): the same image and label bytes."""
    ref = manifest('mmseg')['train']
    cfg = Config(os.path.join(REPO, 'configs/fast_scnn/fast_scnn_cityscapes_512x1024_160k.yml'))
    steps = {t['type']: t for t in cfg.dic['train_dataset']['transforms']}
    from zoo.datasets.base import build_transforms
    rescale, crop, pmd = build_transforms([steps['RandomRescale'], steps['RandomCrop'],
                                           steps['PhotoMetricDistortion']])
    h, w = ref['size']
    img, lab = pc.make_image(h, w, seed=1), pc.make_label(h, w)
    for s, want in ref['resize_crop'].items():
        np.random.seed(int(s))
        random.seed(int(s))
        out = crop(rescale({'img': img, 'label': lab}))
        assert list(out['img'].shape) == want['img_shape']
        assert pc.sha256(out['img']) == want['img_sha256'] and pc.sha256(out['label']) == want['label_sha256'], s
    small = pc.make_image(*ref['photometric']['size'], seed=ref['photometric']['image_seed'])
    for s, want in ref['photometric']['outputs'].items():
        np.random.seed(int(s))
        random.seed(int(s))
        assert pc.sha256(pmd({'img': small.copy(), 'label': None})['img']) == want, s


# -- the evaluation path: what evaluate() feeds the inference routine ----------------------------

def test_evaluate_crops_padding_and_feeds_tta_the_loaded_image(tmp_path):
    """A padded val pipeline scores exactly what the unpadded one does (pointwise model: the
    logits are cropped back, not squeezed), and image-mode TTA gets the loaded uint8 image, in
    the main process and through DataLoader workers alike."""
    from test_evaluator import NUM_CLASSES, PixelNet, write_dataset
    from zoo.engine.evaluator import evaluate
    write_dataset(str(tmp_path))
    norm = dict(type='Normalize', mean=[0, 0, 0], std=[1, 1, 1])

    def run(transforms, test_kwargs, num_workers=0):
        ds = Dataset(str(tmp_path), transforms, num_classes=NUM_CLASSES, mode='val', val_path='val.txt')
        return evaluate(PixelNet(), ds, test_kwargs, num_workers=num_workers, print_detail=False)['confusion_matrix']

    plain = run([norm], {})
    np.testing.assert_array_equal(run([norm, dict(type='Pad', size=[16, 16])], {}), plain)
    tta = {'aug_resize': 'image', 'scales': (1.0,), 'flip_horizontal': True}
    np.testing.assert_array_equal(run([dict(type='Resize', target_size=[40, 40]), norm], tta), plain)
    np.testing.assert_array_equal(run([dict(type='Resize', target_size=[40, 40]), norm], tta, num_workers=1), plain)
    assert not np.array_equal(run([dict(type='Resize', target_size=[40, 40]), norm], {}), plain)


def test_read_image_is_uint8_rgb_and_labels_keep_their_dtype(tmp_path):
    from zoo.datasets.base import read_image, read_label
    rgb = pc.make_image(5, 7)
    path = pc.write_png(str(tmp_path / 'a.png'), rgb)
    img = read_image(path)
    assert img.dtype == np.uint8 and np.array_equal(img, rgb)
    lab = pc.make_label(5, 7)
    pc.write_png(str(tmp_path / 'l.png'), lab)
    assert read_label(str(tmp_path / 'l.png')).dtype == np.uint8
    cv2_16 = np.full((3, 4), 300, np.uint16)
    import cv2
    cv2.imwrite(str(tmp_path / 'l16.png'), cv2_16)
    assert read_label(str(tmp_path / 'l16.png')).dtype == np.uint16
