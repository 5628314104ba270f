"""Transforms change image and label together, with the reference's sizes and values; images
stay uint8 until Normalize (PaddleSeg's transforms: float32, as PaddleSeg).

Pixel-exact agreement with mmseg / sssegmentation / PaddleSeg / RegSeg on whole pipelines is
held by tests/test_pixel_parity.py against stored reference results."""
import random

import cv2
import numpy as np
import pytest

from zoo.datasets import transforms as T
from zoo.datasets.base import Compose
from zoo.utils.errors import ConfigError


def make_sample(h, w, label=None):
    """A uint8 image whose every pixel encodes its own (y, x) so alignment can be checked."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([yy % 256, xx % 256, (yy * w + xx) % 251], -1).astype(np.uint8)
    if label is None:
        label = ((yy * w + xx) % 7).astype(np.int64)
    return {'img': img, 'label': label, 'img_path': 'x.png', 'label_path': 'x_label.png'}


def seed(s=0):
    random.seed(s)
    np.random.seed(s)


# -- flip --------------------------------------------------------------------------

def test_flip_moves_marked_pixel_and_swaps_lip_pairs():
    img = np.zeros((4, 6, 3), np.float32)
    img[1, 0] = 200
    label = np.zeros((4, 6), np.int64)
    label[1, 0], label[2, 0], label[3, 5] = 14, 16, 19
    s = T.RandomHorizontalFlip(prob=1.0, swap_pairs=[[14, 15], [16, 17], [18, 19]])(
        {'img': img, 'label': label})
    assert s['img'][1, 5].tolist() == [200, 200, 200] and s['img'][1, 0].sum() == 0
    assert s['label'][1, 5] == 15 and s['label'][2, 5] == 17 and s['label'][3, 0] == 18
    assert (s['label'] != 0).sum() == 3


def test_flip_prob_zero_and_no_label():
    img = np.random.rand(3, 5, 3).astype(np.float32)
    s = T.RandomHorizontalFlip(prob=0.0)({'img': img.copy(), 'label': None})
    assert np.array_equal(s['img'], img)
    s = T.RandomHorizontalFlip(prob=1.0)({'img': img.copy(), 'label': None})
    assert np.array_equal(s['img'], img[:, ::-1]) and s['label'] is None


# -- crops and pads ----------------------------------------------------------------

def test_random_crop_keeps_image_and_label_aligned():
    seed(1)
    s = make_sample(40, 60)
    out = T.RandomCrop(crop_size=[16, 24])(s)
    assert out['img'].shape == (16, 24, 3) and out['label'].shape == (16, 24)
    y, x = out['img'][..., 0].astype(int), out['img'][..., 1].astype(int)
    assert np.array_equal(out['label'], (y * 60 + x) % 7)
    assert (np.diff(y[:, 0]) == 1).all() and (np.diff(x[0]) == 1).all()


def test_random_crop_smaller_image_is_taken_whole():
    s = make_sample(10, 12)
    out = T.RandomCrop(crop_size=[16, 24])(s)
    assert out['img'].shape == (10, 12, 3) and out['label'].shape == (10, 12)


def test_random_crop_cat_max_ratio_rejects_one_class_crops():
    # class 1 fills the left half, class 2 the right half; about a third of the 60-wide
    # crops have one class over 75 %, and cat_max_ratio 0.75 must redraw those.
    label = np.ones((10, 100), np.int64)
    label[:, 50:] = 2
    label[:, :3] = 255

    def max_ratio(out):
        v, c = np.unique(out['label'], return_counts=True)
        c = c[v != 255]
        return c.max() / c.sum()

    plain, capped = [], []
    for s in range(30):
        seed(s)
        plain.append(max_ratio(T.RandomCrop(crop_size=[10, 60])(make_sample(10, 100, label.copy()))))
        seed(s)
        capped.append(max_ratio(T.RandomCrop(crop_size=[10, 60], cat_max_ratio=0.75)(
            make_sample(10, 100, label.copy()))))
    assert max(plain) >= 0.75  # without the cap such crops happen
    assert max(capped) < 0.75


def test_pad_fills_image_zero_and_label_ignore_bottom_right():
    s = make_sample(5, 7)
    out = T.Pad(size=[8, 10])(s)
    assert out['img'].shape == (8, 10, 3) and out['label'].shape == (8, 10)
    assert (out['img'][5:] == 0).all() and (out['img'][:, 7:] == 0).all()
    assert (out['label'][5:] == 255).all() and (out['label'][:, 7:] == 255).all()
    assert np.array_equal(out['label'][:5, :7], make_sample(5, 7)['label'])
    big = T.Pad(size=[4, 4])(make_sample(5, 7))
    assert big['img'].shape == (5, 7, 3)


def test_random_padding_crop_is_w_h_and_pads_then_crops():
    seed(0)
    out = T.RandomPaddingCrop(crop_size=[12, 8], im_padding_value=0, label_padding_value=255)(make_sample(6, 20))
    assert out['img'].shape == (8, 12, 3)  # crop_size is [w, h]
    assert (out['label'][6:] == 255).all() and (out['img'][6:] == 0).all()
    y, x = out['img'][:6, :, 0].astype(int), out['img'][:6, :, 1].astype(int)
    assert np.array_equal(out['label'][:6], (y * 20 + x) % 7)


# -- resizing ----------------------------------------------------------------------

@pytest.mark.parametrize('w,h,scale,expected', [
    (150, 100, (60, 40), (60, 40)),         # factor min(60/150, 40/100) = 0.4
    (53, 37, (2048, 512), (733, 512)),      # factor 512/37 = 13.8378..; int(733.40 + 0.5) = 733
    (2048, 1024, (1024, 512), (1024, 512)),
    (400, 300, (2048, 512), (683, 512)),    # ADE20K val: 400 * 512/300 = 682.67 -> 683
    (30, 61, (20, 10), (10, 20)),           # portrait: f = min(20/61, 10/30) = 20/61; 30 f = 9.84 -> 10
])
def test_rescale_size_matches_mmcv_rule(w, h, scale, expected):
    new_w, new_h, _ = T.rescale_size(w, h, scale)
    assert (new_w, new_h) == expected


def test_random_rescale_draws_ratio_like_mmcv():
    t = T.RandomRescale(scale=[80, 40], ratio_range=[0.5, 2.0], keep_ratio=True)
    seed(3)
    ratio = np.random.random_sample() * 1.5 + 0.5
    target = (int(80 * ratio), int(40 * ratio))
    exp_w, exp_h, _ = T.rescale_size(50, 20, target)
    seed(3)
    out = t(make_sample(20, 50))
    assert out['img'].shape[:2] == (exp_h, exp_w) == out['label'].shape
    assert set(np.unique(out['label'])) <= set(range(7))  # nearest: no new label values
    seed(3)
    out = T.RandomRescale(scale=[80, 40], ratio_range=[0.5, 2.0], keep_ratio=False)(make_sample(20, 50))
    assert out['img'].shape[:2] == (target[1], target[0])


def test_resize_fixed_and_keep_ratio():
    out = T.Resize(target_size=[30, 10])(make_sample(20, 50))
    assert out['img'].shape == (10, 30, 3) and out['label'].shape == (10, 30)
    out = T.Resize(target_size=[2048, 512], keep_ratio=True)({'img': np.zeros((300, 400, 3), np.float32),
                                                              'label': None})
    assert out['img'].shape[:2] == (512, 683) and out['label'] is None


def test_resize_step_scaling_uses_the_step_grid():
    sizes = set()
    for s in range(20):
        seed(s)
        sizes.add(T.ResizeStepScaling(0.75, 1.25, 0.25)(make_sample(20, 40))['label'].shape)
    assert sizes == {(15, 30), (20, 40), (25, 50)}


def test_resize_by_short_and_random_short_side():
    out = T.ResizeByShort(short_size=10)(make_sample(20, 50))
    assert out['img'].shape[:2] == (10, 25) == out['label'].shape
    out = T.ResizeByShort(short_size=10, max_size=20)(make_sample(20, 50))
    assert out['img'].shape[:2] == (8, 20)
    shorts = set()
    for s in range(40):
        seed(s)
        o = T.RandomResizeShortSide(short_range=[10, 12])(make_sample(20, 50))
        shorts.add(o['img'].shape[0])
        assert o['img'].shape[1] == int(o['img'].shape[0] * 50 / 20) and o['label'].shape == o['img'].shape[:2]
    assert shorts == {10, 11, 12}  # inclusive range, as RegSeg's random.randint


# -- photometric and normalize -----------------------------------------------------

@pytest.mark.parametrize('t,dtype', [(T.PhotoMetricDistortion(), np.uint8),
                                     (T.RandomDistort(brightness_prob=1, contrast_prob=1, saturation_prob=1,
                                                      hue_prob=1), np.float32)])
def test_photometric_changes_image_not_label(t, dtype):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
    label = rng.integers(0, 5, (16, 16)).astype(np.uint8)
    changed = False
    for s in range(6):
        seed(s)
        out = t({'img': img.copy(), 'label': label.copy()})
        assert np.array_equal(out['label'], label)
        assert out['img'].dtype == dtype and out['img'].shape == img.shape  # mmseg: uint8, PaddleSeg: float32
        assert out['img'].min() >= 0 and out['img'].max() <= 255
        changed |= not np.array_equal(out['img'], img)
    assert changed


def mmseg_photometric(img_rgb, brightness_delta=32, contrast=(0.5, 1.5), saturation=(0.5, 1.5), hue_delta=18):
    """mmseg 1.2.2's PhotoMetricDistortion written out pixel by pixel (whole-image float32
    arithmetic, the same random draws in the same order), on BGR as mmseg holds images."""
    def convert(img, alpha=1, beta=0):
        return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def contrast_step(img):
        if np.random.randint(2):
            img = convert(img, alpha=np.random.uniform(*contrast))
        return img

    img = img_rgb[:, :, ::-1].copy()
    if np.random.randint(2):
        img = convert(img, beta=np.random.uniform(-brightness_delta, brightness_delta))
    mode = np.random.randint(2)
    if mode == 1:
        img = contrast_step(img)
    if np.random.randint(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        hsv[:, :, 1] = convert(hsv[:, :, 1], alpha=np.random.uniform(*saturation))
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if np.random.randint(2):
        hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
        hsv[:, :, 0] = (hsv[:, :, 0].astype(int) + np.random.randint(-hue_delta, hue_delta)) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    if mode == 0:
        img = contrast_step(img)
    return img[:, :, ::-1]


def test_photometric_lookup_tables_give_mmseg_bytes():
    """Our table-driven steps produce exactly the bytes of mmseg's whole-image arithmetic, for
    every combination of steps the seeds draw."""
    img = np.random.default_rng(2).integers(0, 256, (24, 40, 3)).astype(np.uint8)
    img[0, :6] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [128, 128, 128]]
    t = T.PhotoMetricDistortion()
    for s in range(40):
        seed(s)
        ours = t({'img': img.copy(), 'label': None})['img']
        seed(s)
        np.testing.assert_array_equal(ours, mmseg_photometric(img), err_msg=f'seed {s}')


def test_photometric_identity_settings_round_to_uint8():
    img = np.random.default_rng(1).uniform(0, 255, (8, 8, 3)).astype(np.float32)
    t = T.PhotoMetricDistortion(brightness_delta=0, contrast_range=[1, 1], saturation_range=[1, 1], hue_delta=0)
    for s in range(4):
        seed(s)
        out = t({'img': img.copy(), 'label': None})
        # a float image is rounded to uint8 first; HSV round trips of uint8 may move a value by a
        # little, never more
        assert out['img'].dtype == np.uint8
        assert np.abs(out['img'].astype(np.float32) - np.rint(img)).max() <= 3


def test_photometric_brightness_only_shifts_all_channels_equally():
    img = np.full((4, 4, 3), 100, np.float32)
    t = T.PhotoMetricDistortion(brightness_delta=32, contrast_range=[1, 1], saturation_range=[1, 1], hue_delta=0)
    shifts = set()
    for s in range(10):
        seed(s)
        out = t({'img': img.copy(), 'label': None})['img'].astype(np.float32)
        assert len(np.unique(out)) == 1
        shifts.add(float(out[0, 0, 0]) - 100)
    assert all(-32 <= d <= 32 for d in shifts) and len(shifts) > 2


def test_normalize_values():
    img = np.array([[[127.5, 0, 255]]], np.float32)
    out = T.Normalize()({'img': img.copy(), 'label': None})
    assert np.allclose(out['img'], [[[0, -1, 1]]])
    out = T.Normalize(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])({'img': img.copy(),
                                                                                     'label': None})
    assert np.allclose(out['img'], [[[(127.5 - 123.675) / 58.395, -116.28 / 57.12, (255 - 103.53) / 57.375]]])
    assert out['img'].dtype == np.float32


def test_normalize_uint8_tables_are_the_float32_arithmetic_in_chw_memory():
    t = T.Normalize(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
    img = np.random.default_rng(3).integers(0, 256, (37, 53, 3)).astype(np.uint8)
    img.reshape(-1, 3)[:256] = np.arange(256)[:, None]  # every value in every channel
    out = t({'img': img.copy(), 'label': None})['img']
    want = (img.astype(np.float32) - np.float32(t.mean)) / np.float32(t.std)
    assert out.dtype == np.float32 and out.shape == img.shape
    np.testing.assert_array_equal(out, want)  # bit for bit: mmseg's preprocessor computes this in float32
    assert out.transpose(2, 0, 1).flags['C_CONTIGUOUS']  # the CHW input needs no copy


def test_geometric_transforms_keep_uint8_until_normalize():
    """The mmseg recipe (Cityscapes train): uint8 image and label through every geometric and
    photometric step, float32 from Normalize on; the label keeps its uint8 until __getitem__."""
    s = make_sample(40, 60, label=(np.arange(2400).reshape(40, 60) % 7).astype(np.uint8))
    seed(0)
    steps = [T.RandomRescale(scale=[60, 40], ratio_range=[0.5, 2.0]), T.RandomCrop(crop_size=[20, 30],
             cat_max_ratio=0.75), T.RandomHorizontalFlip(prob=1.0), T.PhotoMetricDistortion()]
    for t in steps:
        s = t(s)
        assert s['img'].dtype == np.uint8 and s['label'].dtype == np.uint8, type(t).__name__
    s = T.Pad(size=[24, 32])(T.Normalize()(s))
    assert s['img'].dtype == np.float32 and s['label'].dtype == np.uint8 and s['img'].shape == (24, 32, 3)


def test_uint8_resize_rounds_where_float_resize_does_not():
    """A uint8 image is resized in uint8 (OpenCV's fixed-point bilinear, results rounded): what
    mmcv does; it differs from resizing a float32 copy, by at most one grey level."""
    img = np.random.default_rng(4).integers(0, 256, (30, 41, 3)).astype(np.uint8)
    out = T.Resize(target_size=[2048, 512], keep_ratio=True)({'img': img, 'label': None})['img']
    assert out.dtype == np.uint8 and out.shape == (512, 700, 3)
    np.testing.assert_array_equal(out, cv2.resize(img, (700, 512), interpolation=cv2.INTER_LINEAR))
    as_float = cv2.resize(img.astype(np.float32), (700, 512), interpolation=cv2.INTER_LINEAR)
    diff = np.abs(out.astype(np.float32) - as_float)
    assert diff.max() <= 1.0 and (diff > 0.25).mean() > 0.1


def test_paddleseg_transforms_compute_in_float32():
    img = make_sample(20, 40)['img']
    seed(0)
    out = T.ResizeStepScaling(1.5, 1.5, 0)({'img': img.copy(), 'label': None})['img']
    assert out.dtype == np.float32  # PaddleSeg reads float32 and resizes without rounding
    np.testing.assert_array_equal(out, cv2.resize(img.astype(np.float32), (60, 30), interpolation=cv2.INTER_LINEAR))
    out = T.RandomPaddingCrop(crop_size=[48, 24], im_padding_value=127.5)({'img': img.copy(), 'label': None})['img']
    assert out.dtype == np.float32 and (out[20:] == 127.5).all()


def test_pil_backend_for_regseg_short_side_resizes():
    from PIL import Image
    s = make_sample(30, 45, label=(np.arange(1350).reshape(30, 45) % 11).astype(np.uint8))
    out = T.ResizeShortSide(short_size=20)(dict(s, img=s['img'].copy(), label=s['label'].copy()))
    assert out['img'].shape == (20, 30, 3) and out['img'].dtype == np.uint8  # torchvision: int(20 * 45 / 30)
    np.testing.assert_array_equal(out['img'], np.asarray(Image.fromarray(s['img']).resize((30, 20), Image.BILINEAR)))
    np.testing.assert_array_equal(out['label'], np.asarray(Image.fromarray(s['label']).resize((30, 20), Image.NEAREST)))
    portrait = T.ResizeShortSide(short_size=20)({'img': np.zeros((45, 31, 3), np.uint8), 'label': None})
    assert portrait['img'].shape == (29, 20, 3)  # int(20 * 45 / 31) = 29
    cv = T.ResizeShortSide(short_size=20, backend='cv2')({'img': s['img'].copy(), 'label': None})['img']
    np.testing.assert_array_equal(cv, cv2.resize(s['img'], (30, 20), interpolation=cv2.INTER_LINEAR))


def test_class_counts_match_unique():
    lab = np.random.default_rng(5).integers(0, 6, (33, 47)).astype(np.uint8)
    lab[:4] = 255
    for label in (lab, lab.astype(np.int64)):
        v, c = np.unique(label, return_counts=True)
        np.testing.assert_array_equal(np.sort(T.class_counts(label, 255)), np.sort(c[v != 255]))


def test_pad_records_the_valid_region_and_floats_fractional_values():
    s = T.Pad(size=[8, 10], pad_val=127.5)(make_sample(5, 7))
    assert s['img'].dtype == np.float32 and s['valid_shape'] == (5, 7) and (s['img'][5:] == 127.5).all()
    s = T.Pad(size=[8, 10])(make_sample(5, 7))
    assert s['img'].dtype == np.uint8 and (s['img'][5:] == 0).all()


# -- configs -----------------------------------------------------------------------

def test_both_families_build_from_type_dicts_through_the_builder(tmp_path):
    from zoo.builder import build_dataset
    from conftest import write_cityscapes

    root = write_cityscapes(str(tmp_path / 'cs'), n_train=1, n_val=0, height=40, width=60)
    mmseg = [dict(type='RandomRescale', scale=[60, 40], ratio_range=[0.5, 2.0]),
             dict(type='RandomCrop', crop_size=[20, 30], cat_max_ratio=0.75),
             dict(type='RandomHorizontalFlip'), dict(type='PhotoMetricDistortion'),
             dict(type='Normalize', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
             dict(type='Pad', size=[20, 30])]
    paddle = [dict(type='ResizeStepScaling', min_scale_factor=0.5, max_scale_factor=2.0, scale_step_size=0.25),
              dict(type='RandomPaddingCrop', crop_size=[30, 20]), dict(type='RandomHorizontalFlip'),
              dict(type='RandomDistort', brightness_range=0.4, contrast_range=0.4, saturation_range=0.4),
              dict(type='Normalize')]
    for tf in (mmseg, paddle):
        ds = build_dataset({'train_dataset': dict(type='Cityscapes', dataset_root=root, transforms=tf,
                                                  mode='train')})
        img, label = ds[0]
        assert img.shape == (3, 20, 30) and label.shape == (20, 30) and label.dtype == np.int64


def test_unknown_transform_parameter_is_a_config_error(tmp_path):
    from zoo.builder import build_dataset

    with pytest.raises(ConfigError, match='RandomCrop has no parameter .crop_szie.'):
        build_dataset({'train_dataset': dict(type='Cityscapes', dataset_root=str(tmp_path),
                                             transforms=[dict(type='RandomCrop', crop_szie=[1, 2])])})


@pytest.mark.parametrize('make,needle', [
    (lambda: T.RandomCrop(crop_size=[512]), 'RandomCrop.crop_size'),
    (lambda: T.RandomCrop(crop_size=[512, 0]), 'RandomCrop.crop_size'),
    (lambda: T.RandomRescale(ratio_range=[2.0, 0.5]), 'RandomRescale.ratio_range'),
    (lambda: T.RandomRescale(scale=[2048]), 'RandomRescale.scale'),
    (lambda: T.RandomPaddingCrop(crop_size=[1, 2, 3]), 'RandomPaddingCrop.crop_size'),
    (lambda: T.Pad(size='big'), 'Pad.size'),
    (lambda: T.ResizeStepScaling(min_scale_factor=2.0, max_scale_factor=1.0), 'ResizeStepScaling.min_scale_factor'),
    (lambda: T.RandomHorizontalFlip(prob=1.5), 'RandomHorizontalFlip.prob'),
    (lambda: T.RandomHorizontalFlip(swap_pairs=[[1, 2, 3]]), 'RandomHorizontalFlip.swap_pairs'),
    (lambda: T.PhotoMetricDistortion(contrast_range=[1.5, 0.5]), 'PhotoMetricDistortion.contrast_range'),
    (lambda: T.Normalize(std=[1, 0, 1]), 'Normalize.std'),
    (lambda: T.Normalize(mean=[1, 2]), 'Normalize.mean'),
    (lambda: T.RandomResizeShortSide(short_range=[1600, 400]), 'RandomResizeShortSide.short_range'),
    (lambda: T.Resize(target_size=[10]), 'Resize.target_size'),
    (lambda: T.RandomDistort(hue_prob=2), 'RandomDistort.hue_prob'),
    (lambda: T.ResizeShortSide(backend='skimage'), 'ResizeShortSide.backend'),
    (lambda: T.ResizeShortSide(short_size=0), 'ResizeShortSide.short_size'),
])
def test_bad_parameters_name_transform_and_parameter(make, needle):
    with pytest.raises(ConfigError) as e:
        make()
    assert needle in str(e.value) and '\n' not in str(e.value)


def test_compose_runs_in_order():
    seed(0)
    c = Compose([T.Pad(size=[8, 8]), T.RandomCrop(crop_size=[8, 8]), T.Normalize(mean=[0, 0, 0], std=[1, 1, 1])])
    out = c(make_sample(5, 5))
    assert out['img'].shape == (8, 8, 3) and (out['label'][5:] == 255).all()
