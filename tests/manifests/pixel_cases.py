"""Pixel-parity cases shared by ``tests/test_pixel_parity.py`` (our side) and the reference-side
scripts ``tests/manifests/pixels_<reference>.py`` (each run in its reference's environment).

* ``make_image(h, w)``: a generated RGB image, the same bytes under any numpy (integer
  arithmetic only): ramps, hard-edged blocks and hashed noise, so that resizing has gradients to
  interpolate and edges to round. Written as PNG (lossless), it decodes to the same pixels in
  every reader (OpenCV, PIL).
* ``SIZES``: the two image sizes each dataset's validation pipeline is checked on: the
  dataset's usual size and one that the pipeline must resize (or pad) differently.
* ``CONFIG_REFERENCE``: every config of ``configs/`` and the reference test pipeline its
  validation input must equal (``None``: no reference, the demo).
* ``digests(chw, mean, std)``: what a manifest stores of a network input instead of the
  tensor (a 1024x2048 input is 25 MB): the SHA-256 of the input in 0-255 units rounded to
  integers (``x * std + mean``; equal digests = max |diff| 0 in uint8 terms), the SHA-256 of
  the float32 tensor itself, and the values at ``SAMPLE_POINTS`` fixed positions (to measure
  float differences where the references compute the normalization another way).

Imports numpy and OpenCV only: the reference environments run it too.
"""
import datetime
import hashlib
import json
import os
import platform

import cv2
import numpy as np

SIZES = {
    'cityscapes': [(1024, 2048), (1000, 1500)],
    'ade20k': [(512, 683), (1000, 1500)],
    'cocostuff10k': [(480, 640), (1000, 1500)],
    'lip': [(263, 181), (1000, 1500)],
    'voc12aug': [(375, 500), (333, 500)],
    'camvid': [(720, 960), (360, 480)],
}

# reference pipelines, by the reference's own config (read by the reference scripts)
REFERENCES = {
    'mmseg/cityscapes': 'mmsegmentation 1.2.2 fastscnn/fast_scnn_8xb4-160k_cityscapes-512x1024.py '
                        '(_base_/datasets/cityscapes.py test_pipeline + SegDataPreProcessor)',
    'mmseg/cityscapes_769x769': 'mmsegmentation 1.2.2 dmnet/dmnet_r50-d8_4xb2-80k_cityscapes-769x769.py '
                                '(_base_/datasets/cityscapes_769x769.py test_pipeline + SegDataPreProcessor)',
    'mmseg/ade20k': 'mmsegmentation 1.2.2 dmnet/dmnet_r50-d8_4xb4-80k_ade20k-512x512.py '
                    '(_base_/datasets/ade20k.py test_pipeline + SegDataPreProcessor)',
    'sssegmentation/cityscapes': 'sssegmentation 1.7.0 DATASET_CFG_CITYSCAPES_512x1024 test data_pipelines',
    'sssegmentation/ade20k': 'sssegmentation 1.7.0 DATASET_CFG_ADE20k_512x512 test data_pipelines',
    'sssegmentation/cocostuff10k': 'sssegmentation 1.7.0 DATASET_CFG_COCOStuff10k_512x512 test data_pipelines',
    'sssegmentation/lip': 'sssegmentation 1.7.0 DATASET_CFG_LIP_473x473 test data_pipelines',
    'paddleseg/cityscapes': 'PaddleSeg 2.8.0 configs/_base_/cityscapes.yml val transforms',
    'paddleseg/voc12aug': 'PaddleSeg 2.8.0 configs/_base_/pascal_voc12.yml val transforms',
    'regseg/cityscapes': 'RegSeg (RolandGao/RegSeg) build_val_transform(1024, 1024) '
                         '(configs/cityscapes_1000epochs.yaml)',
    'regseg/camvid': 'RegSeg (RolandGao/RegSeg) build_val_transform(720, 720) (configs/camvid_200epochs.yaml)',
}

CONFIG_REFERENCE = {
    'configs/deeplabv3/deeplabv3_r101-d8_cityscapes_512x1024_80k.yml': 'mmseg/cityscapes',
    'configs/deeplabv3/deeplabv3_r50-d8_cityscapes_512x1024_80k.yml': 'mmseg/cityscapes',
    'configs/deeplabv3/deeplabv3_resnet101-vd-os8_cityscapes_512x1024_80k.yml': 'paddleseg/cityscapes',
    'configs/deeplabv3/deeplabv3_resnet101-vd-os8_voc12aug_512x512_40k.yml': 'paddleseg/voc12aug',
    'configs/deeplabv3/deeplabv3_resnet50-vd-os8_cityscapes_512x1024_80k.yml': 'paddleseg/cityscapes',
    'configs/deeplabv3/deeplabv3_resnet50-vd-os8_custom_512x512_10k.yml': 'mmseg/ade20k',  # custom.yml: mmseg ADE20K's
    'configs/deeplabv3/deeplabv3_resnet50-vd-os8_voc12aug_512x512_40k.yml': 'paddleseg/voc12aug',
    'configs/demo/fast_scnn_demo_96x192_1k.yml': None,  # our generated demo data: no reference
    'configs/dmnet/dmnet_r101-d8_ade20k_512x512_160k.yml': 'mmseg/ade20k',
    'configs/dmnet/dmnet_r101-d8_ade20k_512x512_80k.yml': 'mmseg/ade20k',
    'configs/dmnet/dmnet_r101-d8_cityscapes_512x1024_40k.yml': 'mmseg/cityscapes',
    'configs/dmnet/dmnet_r101-d8_cityscapes_512x1024_80k.yml': 'mmseg/cityscapes',
    'configs/dmnet/dmnet_r101-d8_cityscapes_769x769_40k.yml': 'mmseg/cityscapes_769x769',
    'configs/dmnet/dmnet_r101-d8_cityscapes_769x769_80k.yml': 'mmseg/cityscapes_769x769',
    'configs/dmnet/dmnet_r50-d8_ade20k_512x512_160k.yml': 'mmseg/ade20k',
    'configs/dmnet/dmnet_r50-d8_ade20k_512x512_80k.yml': 'mmseg/ade20k',
    'configs/dmnet/dmnet_r50-d8_cityscapes_512x1024_40k.yml': 'mmseg/cityscapes',
    'configs/dmnet/dmnet_r50-d8_cityscapes_512x1024_80k.yml': 'mmseg/cityscapes',
    'configs/dmnet/dmnet_r50-d8_cityscapes_769x769_40k.yml': 'mmseg/cityscapes_769x769',
    'configs/dmnet/dmnet_r50-d8_cityscapes_769x769_80k.yml': 'mmseg/cityscapes_769x769',
    'configs/dmnet/dmnet_r50-d8_custom_512x512_10k.yml': 'mmseg/ade20k',  # custom.yml: mmseg ADE20K's
    'configs/fast_scnn/fast_scnn_cityscapes_512x1024_160k.yml': 'mmseg/cityscapes',
    'configs/fast_scnn/fast_scnn_custom_512x512_10k.yml': 'mmseg/ade20k',  # custom.yml: mmseg ADE20K's
    'configs/mcibi/mcibi_hrnetv2-w48_ade20k_512x512_180e.yml': 'sssegmentation/ade20k',
    'configs/mcibi/mcibi_hrnetv2-w48_cityscapes_512x1024_500e.yml': 'sssegmentation/cityscapes',
    'configs/mcibi/mcibi_hrnetv2-w48_cocostuff10k_512x512_110e.yml': 'sssegmentation/cocostuff10k',
    'configs/mcibi/mcibi_hrnetv2-w48_lip_473x473_150e.yml': 'sssegmentation/lip',
    'configs/mcibi/mcibi_r101-d8_ade20k_512x512_130e.yml': 'sssegmentation/ade20k',
    'configs/mcibi/mcibi_r101-d8_cityscapes_512x1024_440e.yml': 'sssegmentation/cityscapes',
    'configs/mcibi/mcibi_r101-d8_cocostuff10k_512x512_110e.yml': 'sssegmentation/cocostuff10k',
    'configs/mcibi/mcibi_r101-d8_lip_473x473_150e.yml': 'sssegmentation/lip',
    'configs/mcibi/mcibi_r50-d8_ade20k_512x512_130e.yml': 'sssegmentation/ade20k',
    'configs/mcibi/mcibi_r50-d8_cityscapes_512x1024_440e.yml': 'sssegmentation/cityscapes',
    'configs/mcibi/mcibi_r50-d8_cocostuff10k_512x512_110e.yml': 'sssegmentation/cocostuff10k',
    'configs/mcibi/mcibi_r50-d8_custom_512x512_10k.yml': 'mmseg/ade20k',  # custom.yml: mmseg ADE20K's
    'configs/mcibi/mcibi_r50-d8_lip_473x473_150e.yml': 'sssegmentation/lip',
    'configs/mcibi/mcibi_s101-d8_ade20k_512x512_180e.yml': 'sssegmentation/ade20k',
    'configs/mcibi/mcibi_s101-d8_cityscapes_512x1024_500e.yml': 'sssegmentation/cityscapes',
    'configs/mcibi/mcibi_s101-d8_cocostuff10k_512x512_150e.yml': 'sssegmentation/cocostuff10k',
    'configs/mcibi/mcibi_s101-d8_lip_473x473_150e.yml': 'sssegmentation/lip',
    'configs/mcibi/mcibi_vit-large_ade20k_512x512_130e.yml': 'sssegmentation/ade20k',
    'configs/mcibi/mcibi_vit-large_cocostuff10k_512x512_110e.yml': 'sssegmentation/cocostuff10k',
    'configs/regseg/regseg_exp48_camvid_720x960_200e.yml': 'regseg/camvid',
    'configs/regseg/regseg_exp48_cityscapes-trainval_1024x1024_1000e.yml': 'regseg/cityscapes',
    'configs/regseg/regseg_exp48_cityscapes_768x768_1000e.yml': 'regseg/cityscapes',
    'configs/regseg/regseg_exp48_custom_512x512_10k.yml': 'mmseg/ade20k',  # custom.yml: mmseg ADE20K's
    'configs/regseg/regseg_exp53_cityscapes-trainval_1024x1024_1000e.yml': 'regseg/cityscapes',
}

# mmseg's test-time augmentation (tta_pipeline of the two configs), checked on one size each
TTA = {'mmseg/cityscapes': {'size': (1000, 1500), 'scales': (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)},
       'mmseg/ade20k': {'size': (512, 683), 'scales': (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)}}

SAMPLE_POINTS = 257


def dataset_of(reference):
    return reference.split('/')[1].split('_769x769')[0]


def size_key(h, w):
    return f'{h}x{w}'


def make_image(h, w, seed=0):
    """uint8 HxWx3 RGB: per-channel ramps, 37-pixel blocks, and noise from an integer hash."""
    yy = np.arange(h, dtype=np.int64)[:, None]
    xx = np.arange(w, dtype=np.int64)[None, :]
    chans = []
    for c in range(3):
        hashed = ((yy * 73856093) ^ (xx * 19349663) ^ ((c + 7 * seed + 1) * 83492791)) % 1021
        noise = hashed % 61 - 30
        ramp = (xx * 255) // max(w - 1, 1) if c == 0 else (yy * 255) // max(h - 1, 1) if c == 1 else \
            ((xx + yy) * 255) // max(w + h - 2, 1)
        blocks = ((yy // 37 + xx // 37 + c) % 3) * 60
        chans.append(np.clip((ramp + blocks) // 2 + 40 + noise, 0, 255))
    return np.stack(chans, -1).astype(np.uint8)


def make_label(h, w, num_classes=19, seed=0):
    """uint8 HxW class ids in 23x31 blocks, a band of 255 (ignored) along the top."""
    yy = np.arange(h, dtype=np.int64)[:, None]
    xx = np.arange(w, dtype=np.int64)[None, :]
    lab = (((yy // 23) * 7 + (xx // 31) * 3 + seed) * 2654435761 % 4294967296) % num_classes
    lab = np.broadcast_to(lab, (h, w)).astype(np.uint8)
    lab[:5] = 255
    return lab


def write_png(path, rgb):
    """An RGB image as a PNG file (OpenCV writes BGR order)."""
    if not cv2.imwrite(path, np.ascontiguousarray(rgb[:, :, ::-1] if rgb.ndim == 3 else rgb)):
        raise RuntimeError(f'cannot write {path}')
    return path


def sha256(a):
    a = np.ascontiguousarray(a)
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()


def sample_points(size):
    return (np.arange(SAMPLE_POINTS, dtype=np.int64) * 2654435761) % size


def digests(chw, mean, std):
    """What a manifest stores of a CHW float32 network input (see the module docstring)."""
    chw = np.ascontiguousarray(chw, dtype=np.float32)
    mean = np.asarray(mean, np.float64).reshape(3, 1, 1)
    std = np.asarray(std, np.float64).reshape(3, 1, 1)
    pixels = np.rint(chw.astype(np.float64) * std + mean).astype(np.int16)
    return {'shape': list(chw.shape), 'pixels_sha256': sha256(pixels), 'input_sha256': sha256(chw),
            'input_sample': [float(v) for v in chw.reshape(-1)[sample_points(chw.size)]]}


def record_val(key, tmp, network_input, mean, std):
    """``{'HxW': digests}`` of a reference pipeline's network input for each size of the key's
    dataset: ``network_input(png_path)`` returns the CHW float32 input, or ``(input, extras)``
    with a dict of extras to store beside the digests."""
    out = {}
    for h, w in SIZES[dataset_of(key)]:
        png = write_png(os.path.join(tmp, f'{key.replace("/", "_")}_{h}x{w}.png'), make_image(h, w))
        got = network_input(png)
        chw, extras = got if isinstance(got, tuple) else (got, {})
        out[size_key(h, w)] = dict(digests(chw, mean, std), **extras)
    return out


def save_manifest(path, script, versions, **parts):
    """Write a reference manifest: who wrote it, when, with which versions, and its parts."""
    res = {'produced_by': script, 'date': datetime.date.today().isoformat(),
           'environment': {'python': platform.python_version(), 'numpy': np.__version__, **versions}, **parts}
    with open(path, 'w') as f:
        json.dump(res, f, indent=1)
        f.write('\n')
    print('wrote', path)
