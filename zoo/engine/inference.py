"""The one inference routine (whole / slide / flip / multi-scale), used by val, predict and
training-time evaluation.

Semantics (checked against the references, mmseg 1.2.2 and PaddleSeg 2.8):

* **whole**: ``model(x)[0]`` (the main logits, already at the input size; see
  docs/architecture.md), resized bilinearly to ``ori_shape``.
* **slide** (mmseg ``EncoderDecoder.slide_inference``): ``max(ceil((H - crop_h) / stride_h), 0) + 1``
  rows (same for columns); each window starts at ``i * stride``, is clipped to the image and
  shifted back so that it ends at the border; overlapping *logits* are summed and divided by
  the per-pixel window count. An image smaller than the crop is run as one smaller window
  (both references do that); ``pad_to_crop=True`` zero-pads such windows to the crop size
  instead (for models that need a fixed input size) and crops the logits back.
  ``window_softmax=True`` averages each window's softmax *probabilities* instead (sssegmentation's
  ``use_probs_before_resize`` in slide mode; the MCIBI Cityscapes and ViT-L protocols).
* **multi-scale / flip** (mmseg ``SegTTAModel``, PaddleSeg ``aug_inference``, sssegmentation
  ``auginference``): each scale's input is made, optionally flipped (PaddleSeg's combinations:
  none, h, v, h+v), run whole or slide, flipped back and resized to ``ori_shape``; the passes
  are then averaged. How a scale's input is made follows the reference (``aug_resize``):

  - ``image`` (mmseg's ``TestTimeAug``): the *loaded uint8 image* (``image``, before the val
    pipeline's own resizing) is resized by OpenCV as mmcv's ``Resize(scale_factor=s,
    keep_ratio=True)`` does (target ``int(side * s + 0.5)``, then the keep-ratio fit), and
    normalized by the val pipeline's ``Normalize`` (``normalize``). Resizing in uint8 rounds
    every pixel, so this is not the same as resizing the normalized float image.
  - ``tensor`` (PaddleSeg): the *normalized input* ``img`` is interpolated bilinearly to
    ``int(side * s + 0.5)`` (the model's ``align_corners``).
  - ``tensor_factor`` (sssegmentation): ``interpolate(img, scale_factor=s)``: sides
    ``floor(side * s)`` and source coordinates stepped by ``1 / s``.

  The references differ in the merge too: mmseg 1.2.2's ``SegTTAModel.merge_preds`` averages
  the passes' *softmax probabilities*, PaddleSeg 2.8.0's ``aug_inference`` averages the raw
  *logits*. The default follows mmseg (``merge='softmax'``); ``merge='logits'`` gives
  PaddleSeg's result. The argmax of the result is the prediction.
* **padding** (PaddleSeg's val ``Padding``): with ``valid_shape`` (the size of the image inside
  a bottom/right-padded ``img``), each pass's logits are resized to the input size and cropped
  to ``valid_shape`` before the resize to ``ori_shape``, as PaddleSeg's ``reverse_transform``.

Measured parity (scripts run in the reference environments, random 3x3-conv model with a
position-dependent output, 37x53 input): PaddleSeg 2.8.0 ``inference``/``slide_inference``/
``aug_inference`` (3 scales x 4 flips, whole and slide, ``merge='logits'``) max |diff| 2.4e-7;
mmseg 1.2.2 ``slide_inference`` 7.2e-7, slide + flip TTA probabilities 2.4e-7, identical argmax.

The return value is ``[N, C, H_ori, W_ori]``: the logits for a single pass, the averaged
scores (probabilities by default) when several passes are merged.
"""
import paddle
import paddle.nn.functional as F

from ..datasets.base import to_chw
from ..datasets.transforms import rescale_size, resize_image
from ..utils.config import AUG_RESIZE, TEST_CONFIG_KEYS  # the config schema lives in one place
from ..utils.errors import ConfigError
from ..utils.logger import logger


def _main_logits(model, x):
    out = model(x)
    return out[0] if isinstance(out, (list, tuple)) else out


def _resize(x, size, align_corners):
    size = [int(s) for s in size]
    if list(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode='bilinear', align_corners=align_corners)


def _flip(x, horizontal, vertical):
    axes = ([3] if horizontal else []) + ([2] if vertical else [])
    return paddle.flip(x, axis=axes) if axes else x


def _pair(v):
    if isinstance(v, int):
        return v, v
    return int(v[0]), int(v[1])


def slide_inference(model, img, crop_size, stride, pad_to_crop=False, window_softmax=False):
    """Sliding-window logits at the input size (probabilities with ``window_softmax``);
    ``crop_size`` and ``stride`` are ``(h, w)``."""
    h_crop, w_crop = _pair(crop_size)
    h_stride, w_stride = _pair(stride)
    if h_stride > h_crop or w_stride > w_crop or min(h_stride, w_stride, h_crop, w_crop) <= 0:
        raise ConfigError(f'test_config: slide stride (h, w) = {(h_stride, w_stride)} must be positive and '
                          f'not larger than crop_size {(h_crop, w_crop)} (pixels would be left unpredicted)')
    h_img, w_img = int(img.shape[2]), int(img.shape[3])
    h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1  # = max(ceil((H - crop) / s), 0) + 1
    w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
    preds = None
    count = paddle.zeros([1, 1, h_img, w_img], dtype='float32')
    for hi in range(h_grids):
        for wi in range(w_grids):
            y2 = min(hi * h_stride + h_crop, h_img)
            x2 = min(wi * w_stride + w_crop, w_img)
            y1 = max(y2 - h_crop, 0)
            x1 = max(x2 - w_crop, 0)
            crop = img[:, :, y1:y2, x1:x2]
            ch, cw = y2 - y1, x2 - x1
            if pad_to_crop and (ch < h_crop or cw < w_crop):
                crop = F.pad(crop, [0, w_crop - cw, 0, h_crop - ch], value=0.0)  # [left, right, top, bottom]
                logit = _main_logits(model, crop)[:, :, :ch, :cw]
            else:
                logit = _main_logits(model, crop)
            if window_softmax:
                logit = F.softmax(logit, axis=1)
            padded = F.pad(logit, [x1, w_img - x2, y1, h_img - y2], value=0.0)
            preds = padded if preds is None else preds + padded
            count[:, :, y1:y2, x1:x2] += 1
    return preds / count


def _single_pass(model, img, mode, crop_size, stride, pad_to_crop, window_softmax=False):
    if mode == 'whole':
        return _main_logits(model, img)
    if mode == 'slide':
        if crop_size is None or stride is None:
            raise ConfigError('test_config: slide inference needs crop_size and stride')
        return slide_inference(model, img, crop_size, stride, pad_to_crop, window_softmax)
    raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")


def swap_channels(logits, pairs):
    """Exchange left/right class channels (e.g. LIP's arms) of a horizontally flipped pass, so
    that its un-flipped prediction means the same classes as the plain pass (as sssegmentation
    does for LIP)."""
    if not pairs:
        return logits
    order = list(range(int(logits.shape[1])))
    for a, b in pairs:
        order[a], order[b] = order[b], order[a]
    return paddle.index_select(logits, paddle.to_tensor(order, dtype='int64'), axis=1)


def flip_combinations(flip_horizontal=False, flip_vertical=False):
    """``[(h, v), ...]`` passes, PaddleSeg's order: none, h, v, h+v."""
    combos = [(False, False)]
    if flip_horizontal:
        combos.append((True, False))
    if flip_vertical:
        combos.append((False, True))
        if flip_horizontal:
            combos.append((True, True))
    return combos


def rescale_image(image, scale):
    """mmcv ``Resize(scale_factor=scale, keep_ratio=True)`` of a uint8 HxWx3 image: the target
    ``(int(w * s + 0.5), int(h * s + 0.5))``, then ``imrescale``'s fit into it (which may move a
    side by a pixel), OpenCV bilinear."""
    h, w = image.shape[:2]
    new_w, new_h, _ = rescale_size(w, h, (int(w * scale + 0.5), int(h * scale + 0.5)))
    return resize_image(image, new_w, new_h)


def _scaled_input(img, scale, aug_resize, align_corners, image, normalize):
    """The network input of one scale (see the module docstring)."""
    if aug_resize == 'image':
        x = to_chw(normalize.normalize(rescale_image(image, scale)))
        return paddle.to_tensor(x[None])
    if aug_resize == 'tensor_factor':
        if scale == 1.0:
            return img
        return F.interpolate(img, scale_factor=scale, mode='bilinear', align_corners=align_corners)
    h_in, w_in = int(img.shape[2]), int(img.shape[3])
    return _resize(img, (int(h_in * scale + 0.5), int(w_in * scale + 0.5)), align_corners)


def inference(model, img, ori_shape=None, mode='whole', crop_size=None, stride=None, flip_horizontal=False,
              flip_vertical=False, scales=(1.0,), align_corners=None, merge='softmax', pad_to_crop=False,
              flip_swap_pairs=(), window_softmax=False, aug_resize='tensor', image=None, normalize=None,
              valid_shape=None):
    """Segment a normalized batch ``img`` [N, 3, H, W]; returns scores [N, C, *ori_shape].

    ``window_softmax`` (slide mode): average the windows' probabilities, and then the passes'
    probabilities as they are (whatever ``merge`` says).

    ``crop_size``/``stride`` are ``(h, w)`` (``parse_test_config`` converts PaddleSeg's ``[w, h]``);
    ``flip_swap_pairs`` (a dataset's ``FLIP_PAIRS``) swaps left/right class channels of
    horizontally flipped passes;
    ``align_corners`` defaults to the model's. ``aug_resize='image'`` (``parse_test_config`` gives
    it only with ``aug_eval``) makes every pass from ``image`` (the loaded uint8 HxWx3 RGB image,
    one per call), normalized by ``normalize`` (the val pipeline's ``Normalize``), as mmseg's
    TTA pipeline does; ``img`` then only gives the batch size. ``valid_shape`` (h, w) is the
    image's part of a padded ``img``.
    Call it under ``paddle.no_grad()`` with the model in eval mode (the evaluator and predictor do).
    """
    if align_corners is None:
        align_corners = bool(getattr(model, 'align_corners', False))
    if merge not in ('softmax', 'logits'):
        raise ValueError(f"merge must be 'softmax' or 'logits', got {merge!r}")
    if aug_resize not in AUG_RESIZE:
        raise ValueError(f'aug_resize must be one of {AUG_RESIZE}, got {aug_resize!r}')
    if isinstance(scales, (int, float)):
        scales = (scales,)
    h_in, w_in = int(img.shape[2]), int(img.shape[3])
    ori_shape = (h_in, w_in) if ori_shape is None else tuple(int(s) for s in ori_shape[-2:])
    flips = flip_combinations(flip_horizontal, flip_vertical)
    n_passes = len(scales) * len(flips)
    if aug_resize == 'image' and (image is None or normalize is None or int(img.shape[0]) != 1):
        raise ValueError("aug_resize='image' needs the loaded image and its Normalize, one image per call")
    total = None
    for scale in scales:
        x = _scaled_input(img, scale, aug_resize, align_corners, image, normalize)
        for fh, fv in flips:
            logit = _flip(_single_pass(model, _flip(x, fh, fv), mode, crop_size, stride, pad_to_crop,
                                       window_softmax), fh, fv)
            if fh:
                logit = swap_channels(logit, flip_swap_pairs)
            if valid_shape is not None and aug_resize != 'image':
                vh, vw = (int(v) for v in valid_shape)
                logit = _resize(logit, (h_in, w_in), align_corners)[:, :, :vh, :vw]
            logit = _resize(logit, ori_shape, align_corners)
            if n_passes == 1:
                return logit
            probs = window_softmax and mode == 'slide'
            score = F.softmax(logit, axis=1) if merge == 'softmax' and not probs else logit
            total = score if total is None else total + score
    return total / n_passes


# -- test_config ---------------------------------------------------------------------------

def _wh(value, name):
    """``[w, h]`` (PaddleSeg order) or an int -> ``(h, w)``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value, value
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        return int(value[1]), int(value[0])
    raise ConfigError(f'{name}: expected [width, height] (two positive integers), got {value!r}')


def _flag(value, name):
    if not isinstance(value, bool):
        raise ConfigError(f'{name}: expected true/false, got {value!r}')
    return value


def parse_test_config(test_config=None, align_corners=None, overrides=None, where='test_config'):
    """Turn a YAML ``test_config`` block (+ command-line overrides) into ``inference`` kwargs.

    Keys (PaddleSeg's): ``is_slide``, ``crop_size: [w, h]``, ``stride: [w, h]``, ``aug_eval``,
    ``scales`` (a number or a list), ``flip_horizontal``, ``flip_vertical``; and ours,
    ``window_softmax`` (slide windows average probabilities, see ``inference``) and
    ``aug_resize`` (how a scale's input is made: ``image``, mmseg's; ``tensor``, PaddleSeg's, the
    default; ``tensor_factor``, sssegmentation's). As in PaddleSeg, ``scales`` and the flips
    apply only with ``aug_eval: true`` (``--aug_eval`` / ``--aug_pred``). ``overrides`` (from the
    command line) win over the file.
    """
    if not isinstance(test_config or {}, dict):
        raise ConfigError(f'{where}: expected a mapping, got {test_config!r}')
    tc = dict(test_config or {})
    unknown = [k for k in tc if k not in TEST_CONFIG_KEYS]
    if unknown:
        raise ConfigError(f'{where}: unknown key {unknown[0]!r} (accepted: {", ".join(TEST_CONFIG_KEYS)})')
    # where each value came from, for error messages: the file's key or the command-line flag
    name = {k: f'{where}.{k}' for k in TEST_CONFIG_KEYS}
    for k, v in (overrides or {}).items():
        if k not in TEST_CONFIG_KEYS:
            raise ValueError(f'unknown test_config override {k!r}')
        tc[k] = v
        name[k] = f'--{k}'
    is_slide = _flag(tc.get('is_slide', False), name['is_slide'])
    aug = _flag(tc.get('aug_eval', False), name['aug_eval'])
    flip_h = _flag(tc.get('flip_horizontal', False), name['flip_horizontal'])
    flip_v = _flag(tc.get('flip_vertical', False), name['flip_vertical'])
    scales = tc.get('scales', 1.0)
    if isinstance(scales, (int, float)) and not isinstance(scales, bool):
        scales = [scales]
    if (not isinstance(scales, (list, tuple)) or not scales
            or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in scales)):
        raise ConfigError(f'{name["scales"]}: expected a positive number or a list of them, got {scales!r}')
    kwargs = {'mode': 'whole', 'crop_size': None, 'stride': None, 'scales': (1.0,),
              'flip_horizontal': False, 'flip_vertical': False}
    if is_slide:
        for key in ('crop_size', 'stride'):
            if tc.get(key) is None:
                raise ConfigError(f'{where}.{key} (or --{key}): required when is_slide is true ([width, height])')
        crop, stride = _wh(tc['crop_size'], name['crop_size']), _wh(tc['stride'], name['stride'])
        if stride[0] > crop[0] or stride[1] > crop[1]:
            raise ConfigError(f'{name["stride"]}: {list(tc["stride"])} is larger than crop_size '
                              f'{list(tc["crop_size"])}; pixels between windows would never be predicted')
        kwargs.update(mode='slide', crop_size=crop, stride=stride)
        if _flag(tc.get('window_softmax', False), name['window_softmax']):
            kwargs['window_softmax'] = True
    aug_resize = tc.get('aug_resize', 'tensor')
    if aug_resize not in AUG_RESIZE:
        raise ConfigError(f'{name["aug_resize"]}: expected one of {", ".join(AUG_RESIZE)}, got {aug_resize!r}')
    if aug:
        kwargs.update(scales=tuple(float(s) for s in scales), flip_horizontal=flip_h, flip_vertical=flip_v)
        if aug_resize != 'tensor':
            kwargs['aug_resize'] = aug_resize
    elif flip_h or flip_v or tuple(scales) != (1.0,):
        logger.warning(f'{where}: scales/flip_* are used only with aug_eval (--aug_eval / --aug_pred); ignored')
    if align_corners is not None:
        kwargs['align_corners'] = bool(align_corners)
    return kwargs
