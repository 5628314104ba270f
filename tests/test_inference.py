"""Whole / slide / flip / multi-scale inference against numpy hand computations on a tiny
model whose output depends on the position inside its input window (so that window averaging
and flipping are really exercised), and test_config parsing."""
import numpy as np
import paddle
import paddle.nn as nn
import pytest

from zoo.engine.inference import flip_combinations, inference, parse_test_config, slide_inference
from zoo.utils.errors import ConfigError

W = np.array([[0.5, -0.2, 0.1], [0.3, 0.4, -0.6], [-0.1, 0.2, 0.3]], np.float32)  # [C_out=3, C_in=3]
B = np.array([0.1, -0.2, 0.05], np.float32)


class PosNet(nn.Layer):
    """logits = 1x1 conv(x) + a row ramp on class 0 + a column ramp on class 1 (in window coords).

    Records the top-left value of input channel 2 of each call, which the tests fill with the
    absolute position ``100 * row + col``, to see where each window was taken.
    """

    def __init__(self, align_corners=False):
        super().__init__()
        self.align_corners = align_corners
        self.conv = nn.Conv2D(3, 3, 1)
        self.conv.weight.set_value(W.reshape(3, 3, 1, 1))
        self.conv.bias.set_value(B)
        self.calls = []

    def forward(self, x):
        h, w = x.shape[2], x.shape[3]
        self.calls.append((float(x[0, 2, 0, 0]), h, w))
        rows = paddle.arange(h, dtype='float32').reshape([1, 1, h, 1]).expand([1, 1, h, w])
        cols = paddle.arange(w, dtype='float32').reshape([1, 1, 1, w]).expand([1, 1, h, w])
        ramp = paddle.concat([0.3 * rows, 0.2 * cols, paddle.zeros_like(rows)], axis=1)
        return [self.conv(x) + ramp]


def np_model(x):
    """The same model in numpy on a [3, h, w] window."""
    _, h, w = x.shape
    out = np.einsum('ck,khw->chw', W, x) + B[:, None, None]
    out[0] += 0.3 * np.arange(h)[:, None]
    out[1] += 0.2 * np.arange(w)[None, :]
    return out


def np_resize(x, size):
    """Bilinear resize of [C, h, w], half-pixel centers (align_corners=False), edge clamped."""
    _, h, w = x.shape
    oh, ow = size

    def weights(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, fy = weights(h, oh)
    x0, x1, fx = weights(w, ow)
    top = x[:, y0][:, :, x0] * (1 - fx) + x[:, y0][:, :, x1] * fx
    bot = x[:, y1][:, :, x0] * (1 - fx) + x[:, y1][:, :, x1] * fx
    return top * (1 - fy[:, None]) + bot * fy[:, None]


def np_softmax(x):
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def make_image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(3, h, w)).astype(np.float32)
    img[2] = 100 * np.arange(h)[:, None] + np.arange(w)[None, :]  # absolute position, read by PosNet
    return img


def run(model, img, **kw):
    with paddle.no_grad():
        return inference(model, paddle.to_tensor(img[None]), **kw).numpy()[0]


def test_whole_is_main_logits_resized_to_ori_shape():
    img = make_image(4, 6)
    model = PosNet()
    np.testing.assert_allclose(run(model, img), np_model(img), atol=1e-4)
    np.testing.assert_allclose(run(model, img, ori_shape=(8, 12)), np_resize(np_model(img), (8, 12)), atol=1e-4)


def test_slide_windows_and_averaging_by_hand():
    # H=7, crop 4, stride 2: rows = max(ceil((7-4)/2), 0) + 1 = 3 -> starts 0, 2, then 4 shifted to 3
    # W=5, crop 3, stride 3: cols = ceil(2/3) + 1 = 2 -> starts 0 and 3 shifted back to 2
    img = make_image(7, 5)
    model = PosNet()
    got = run(model, img, mode='slide', crop_size=(4, 3), stride=(2, 3))
    starts = sorted(int(v) for v, _, _ in model.calls)
    assert starts == sorted(100 * r + c for r in (0, 2, 3) for c in (0, 2))
    assert all((h, w) == (4, 3) for _, h, w in model.calls)
    acc = np.zeros((3, 7, 5))
    cnt = np.zeros((7, 5))
    for r in (0, 2, 3):
        for c in (0, 2):
            acc[:, r:r + 4, c:c + 3] += np_model(img[:, r:r + 4, c:c + 3])
            cnt[r:r + 4, c:c + 3] += 1
    assert cnt.min() == 1 and cnt.max() == 6  # windows overlap, so averaging matters
    np.testing.assert_allclose(got, acc / cnt, atol=1e-4)
    assert not np.allclose(got, np_model(img), atol=1e-2)  # differs from whole inference


def test_slide_window_softmax_averages_window_probabilities():
    """sssegmentation's use_probs_before_resize: each window's softmax, then the per-pixel
    average; with flip, the passes' probabilities are averaged as they are (no second softmax)."""
    img = make_image(7, 5)
    got = run(PosNet(), img, mode='slide', crop_size=(4, 3), stride=(2, 3), window_softmax=True)
    acc = np.zeros((3, 7, 5))
    cnt = np.zeros((7, 5))
    for r in (0, 2, 3):
        for c in (0, 2):
            acc[:, r:r + 4, c:c + 3] += np_softmax(np_model(img[:, r:r + 4, c:c + 3]))
            cnt[r:r + 4, c:c + 3] += 1
    np.testing.assert_allclose(got, acc / cnt, atol=1e-5)
    flipped = img[:, :, ::-1].copy()
    acc_f = np.zeros((3, 7, 5))
    for r in (0, 2, 3):
        for c in (0, 2):
            acc_f[:, r:r + 4, c:c + 3] += np_softmax(np_model(flipped[:, r:r + 4, c:c + 3]))
    both = run(PosNet(), img, mode='slide', crop_size=(4, 3), stride=(2, 3), window_softmax=True,
               flip_horizontal=True)
    np.testing.assert_allclose(both, (acc / cnt + (acc_f / cnt[:, ::-1])[:, :, ::-1]) / 2, atol=1e-5)
    kw = parse_test_config({'is_slide': True, 'crop_size': [3, 4], 'stride': [3, 2], 'window_softmax': True})
    assert kw['window_softmax'] is True and kw['crop_size'] == (4, 3)
    assert 'window_softmax' not in parse_test_config({'is_slide': True, 'crop_size': [3, 4], 'stride': [3, 2]})


def test_slide_image_smaller_than_crop():
    img = make_image(3, 5)
    model = PosNet()
    got = run(model, img, mode='slide', crop_size=(4, 4), stride=(2, 2))
    # rows: one window (the whole height, 3 < 4); cols: 2 windows of width 4 at 0 and 1
    assert sorted((int(v), h, w) for v, h, w in model.calls) == [(0, 3, 4), (1, 3, 4)]
    want = np.zeros((3, 3, 5))
    want[:, :, 0:4] += np_model(img[:, :, 0:4])
    want[:, :, 1:5] += np_model(img[:, :, 1:5])
    want[:, :, 1:4] /= 2
    np.testing.assert_allclose(got, want, atol=1e-4)
    # pad_to_crop: the model sees 4x4 windows, zero rows below; logits cropped back
    model = PosNet()
    got_pad = run(model, img, mode='slide', crop_size=(4, 4), stride=(2, 2), pad_to_crop=True)
    assert all((h, w) == (4, 4) for _, h, w in model.calls)
    np.testing.assert_allclose(got_pad, want, atol=1e-4)  # PosNet is pointwise + window ramp


def test_flip_averages_softmax_of_flipped_passes():
    img = make_image(4, 6, seed=1)
    model = PosNet()
    got = run(model, img, flip_horizontal=True, flip_vertical=True)
    passes = [np_model(img), np_model(img[:, :, ::-1])[:, :, ::-1], np_model(img[:, ::-1])[:, ::-1],
              np_model(img[:, ::-1, ::-1])[:, ::-1, ::-1]]
    want = sum(np_softmax(p) for p in passes) / 4
    np.testing.assert_allclose(got, want, atol=1e-5)
    # the ramps make the flipped passes differ from the plain one
    assert not np.allclose(passes[0], passes[1], atol=1e-2)
    got_logits = run(model, img, flip_horizontal=True, merge='logits')
    np.testing.assert_allclose(got_logits, (passes[0] + passes[1]) / 2, atol=1e-4)


def test_multi_scale_resizes_and_averages_at_original_size():
    img = make_image(8, 6, seed=2)
    model = PosNet()
    got = run(model, img, scales=(0.5, 1.0, 1.5))
    want = 0
    for s in (0.5, 1.0, 1.5):
        size = (int(8 * s + 0.5), int(6 * s + 0.5))
        x = np_resize(img, size)
        want = want + np_softmax(np_resize(np_model(x), (8, 6)))
    np.testing.assert_allclose(got, want / 3, atol=1e-4)
    assert sorted((h, w) for _, h, w in model.calls) == [(4, 3), (8, 6), (12, 9)]


def test_multi_scale_with_slide_and_flip_counts_passes():
    img = make_image(8, 8, seed=3)
    model = PosNet()
    out = run(model, img, ori_shape=(8, 8), mode='slide', crop_size=(4, 4), stride=(4, 4), scales=(1.0, 0.5),
              flip_horizontal=True)
    # scale 1: 2x2 windows, scale 0.5: the 4x4 image is one window; x2 for the flip
    assert len(model.calls) == (4 + 1) * 2
    np.testing.assert_allclose(out.sum(axis=0), 1.0, atol=1e-5)  # averaged probabilities


def test_flip_combinations_order():
    assert flip_combinations(True, True) == [(False, False), (True, False), (False, True), (True, True)]
    assert flip_combinations(False, True) == [(False, False), (False, True)]


def test_slide_inference_pads_with_left_right_top_bottom():
    img = make_image(6, 6)
    with paddle.no_grad():
        out = slide_inference(PosNet(), paddle.to_tensor(img[None]), (6, 4), (6, 2)).numpy()[0]
    want = np.zeros((3, 6, 6))
    want[:, :, 0:4] += np_model(img[:, :, 0:4])
    want[:, :, 2:6] += np_model(img[:, :, 2:6])
    want[:, :, 2:4] /= 2
    np.testing.assert_allclose(out, want, atol=1e-4)


# -- test_config ---------------------------------------------------------------------------

def test_parse_test_config_paddleseg_keys():
    kw = parse_test_config({'is_slide': True, 'crop_size': [1024, 512], 'stride': [768, 384]})
    assert kw['mode'] == 'slide' and kw['crop_size'] == (512, 1024) and kw['stride'] == (384, 768)  # [w, h] -> (h, w)
    assert kw['scales'] == (1.0,) and not kw['flip_horizontal']
    kw = parse_test_config({'aug_eval': True, 'scales': [0.75, 1.0, 1.25], 'flip_horizontal': True}, align_corners=True)
    assert kw == {'mode': 'whole', 'crop_size': None, 'stride': None, 'scales': (0.75, 1.0, 1.25),
                  'flip_horizontal': True, 'flip_vertical': False, 'align_corners': True}
    # as in PaddleSeg, scales and flips need aug_eval
    kw = parse_test_config({'scales': [0.5, 1.0], 'flip_horizontal': True})
    assert kw['scales'] == (1.0,) and not kw['flip_horizontal']
    # command-line overrides win over the file
    kw = parse_test_config({'is_slide': True, 'crop_size': [8, 8], 'stride': [4, 4]},
                           overrides={'is_slide': False, 'aug_eval': True, 'scales': [2.0]})
    assert kw['mode'] == 'whole' and kw['scales'] == (2.0,)
    with pytest.raises(ConfigError, match=r'^--stride: \[9, 9\] is larger than crop_size'):  # names the flag
        parse_test_config({'is_slide': True, 'crop_size': [8, 8], 'stride': [4, 4]}, overrides={'stride': [9, 9]})
    assert parse_test_config(None)['mode'] == 'whole'


@pytest.mark.parametrize('tc, needle', [
    ({'is_slid': True}, "unknown key 'is_slid'"),
    ({'is_slide': True, 'crop_size': [8, 8]}, 'test_config.stride (or --stride): required'),
    ({'is_slide': True, 'crop_size': [8], 'stride': [4, 4]}, 'test_config.crop_size: expected [width, height]'),
    ({'is_slide': 'yes'}, 'test_config.is_slide: expected true/false'),
    ({'is_slide': True, 'crop_size': [8, 8], 'stride': [9, 4]}, 'test_config.stride: [9, 4] is larger than crop_size'),
    ({'aug_eval': True, 'scales': [1.0, -1]}, 'test_config.scales: expected a positive number'),
])
def test_parse_test_config_errors(tc, needle):
    with pytest.raises(ConfigError) as e:
        parse_test_config(tc, where='test_config')
    assert needle in str(e.value) and '\n' not in str(e.value)


def test_horizontal_flip_swaps_left_right_class_channels():
    """LIP: a flipped pass's left-arm channel becomes the right-arm channel once un-flipped."""
    import paddle
    from zoo.engine.inference import inference

    class ChannelId(paddle.nn.Layer):
        def forward(self, x):  # logits whose channel c is the constant c (+ a ramp in x)
            n, _, h, w = x.shape
            base = paddle.arange(4, dtype='float32').reshape([1, 4, 1, 1]) * 10
            ramp = paddle.arange(w, dtype='float32').reshape([1, 1, 1, w])
            return [paddle.tile(base + ramp, [n, 1, h, 1])]

    img = paddle.zeros([1, 3, 2, 3])
    out = inference(ChannelId(), img, flip_horizontal=True, merge='logits', flip_swap_pairs=[(1, 2)]).numpy()
    ramp = np.arange(3, dtype='float32')
    expected = {0: 0, 1: 10, 2: 20, 3: 30}
    # plain pass: channel c = 10c + ramp; flipped pass after un-flip: 10c + flipped ramp, with 1 and 2 exchanged
    for c, v in expected.items():
        swapped = {1: 20, 2: 10}.get(c, v)
        np.testing.assert_allclose(out[0, c, 0], (v + ramp + swapped + ramp[::-1]) / 2)


# -- how a scale's input is made (aug_resize) and padded inputs ------------------------------

class Recorder(nn.Layer):
    """Records each pass's input; logits = the input's first two channels (so merged results
    can be checked too)."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.numpy()[0])
        return [x[:, :2]]


def test_aug_resize_image_rescales_the_loaded_uint8_image():
    """mmseg: each scale resizes the uint8 image (mmcv's sizes, OpenCV, rounded) and normalizes
    it; the val pipeline's own input is not used (mmseg's TTA pipeline skips its Resize)."""
    import cv2
    from zoo.datasets.transforms import Normalize
    image = np.random.default_rng(0).integers(0, 256, (21, 22, 3)).astype(np.uint8)
    norm = Normalize(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])
    model = Recorder()
    dummy = paddle.zeros([1, 3, 5, 5])  # only its batch size is used
    with paddle.no_grad():
        inference(model, dummy, ori_shape=(21, 22), scales=(0.5, 1.25), flip_horizontal=True, aug_resize='image',
                  image=image, normalize=norm)
    # mmcv at 1.25: the target (int(22 * 1.25 + .5), int(21 * 1.25 + .5)) = (28, 26), then imrescale's
    # fit into it: f = min(28 / 22, 26 / 21) = 1.238, so 27 wide, not 28
    sizes = [(11, 11), (26, 27)]
    assert [x.shape[1:] for x in model.inputs] == [sizes[0]] * 2 + [sizes[1]] * 2
    for k, (h, w) in enumerate(sizes):
        want = norm.normalize(cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)).transpose(2, 0, 1)
        np.testing.assert_array_equal(model.inputs[2 * k], want)
        np.testing.assert_array_equal(model.inputs[2 * k + 1], want[:, :, ::-1])  # the flipped pass
    with pytest.raises(ValueError, match='needs the loaded image'):
        inference(model, dummy, scales=(0.5,), aug_resize='image')


def test_aug_resize_tensor_factor_is_interpolate_by_scale_factor():
    """sssegmentation: interpolate(x, scale_factor=s): floor sizes, 1/s steps; PaddleSeg
    ('tensor'): int(side * s + 0.5) and the size ratio."""
    import paddle.nn.functional as F
    img = make_image(7, 11, seed=4)
    x = paddle.to_tensor(img[None])
    for mode, size in (('tensor_factor', (8, 13)), ('tensor', (9, 14))):
        model = Recorder()
        with paddle.no_grad():
            inference(model, x, scales=(1.25,), flip_horizontal=True, aug_resize=mode)
        assert model.inputs[0].shape[1:] == size
        if mode == 'tensor_factor':
            want = F.interpolate(x, scale_factor=1.25, mode='bilinear', align_corners=False).numpy()[0]
        else:
            want = np_resize(img, size)
        np.testing.assert_allclose(model.inputs[0], want, atol=1e-5)
    kw = parse_test_config({'aug_eval': True, 'scales': [0.5], 'aug_resize': 'tensor_factor'})
    assert kw['aug_resize'] == 'tensor_factor'
    assert 'aug_resize' not in parse_test_config({'aug_resize': 'image'})  # single scale: the val input
    with pytest.raises(ConfigError, match="test_config.aug_resize: expected one of image, tensor, tensor_factor"):
        parse_test_config({'aug_resize': 'pixels'})


def test_valid_shape_crops_the_padding_before_resizing_to_the_original():
    """PaddleSeg's val Padding: logits of a bottom/right-padded input are cropped back to the
    image (its reverse_transform), not squeezed onto it."""
    img = make_image(8, 10, seed=5)
    img[:, 5:] = 0  # rows 5..7 are padding
    img[:, :, 7:] = 0
    x = paddle.to_tensor(img[None])
    model = Recorder()
    with paddle.no_grad():
        out = inference(model, x, ori_shape=(5, 7), valid_shape=(5, 7)).numpy()[0]
    np.testing.assert_allclose(out, img[:2, :5, :7])
    with paddle.no_grad():  # with TTA: passes back at the input size, cropped, then resized
        out = inference(model, x, ori_shape=(5, 7), valid_shape=(5, 7), scales=(1.0, 0.5), merge='logits').numpy()[0]
    half = np_resize(np_resize(img[:2], (4, 5)), (8, 10))[:, :5, :7]
    np.testing.assert_allclose(out, (img[:2, :5, :7] + half) / 2, atol=1e-5)
