"""Predict images with a trained model and save the results as PaddleSeg does:

* ``<save_dir>/pseudo_color_prediction/<name>.png``: the class ids as a palette PNG (an RGB
  PNG if PIL is missing);
* ``<save_dir>/added_prediction/<name>.jpg``: the image blended with the colored prediction.

With ``output_format='cityscapes'`` (``predict.py --format cityscapes``) it writes instead what
the Cityscapes benchmark server takes: ``<save_dir>/cityscapes_results/<name>.png``, one channel,
the *label ids* of cityscapesScripts' table (road 7, sidewalk 8, ..., bicycle 33) mapped from
the 19 train ids the models predict, at the image's size. The server's evaluation matches a
result to its image by the ``<city>_<seq>_<frame>`` prefix of the file name, which ``<name>``
keeps (``aachen_000000_000019_leftImg8bit.png`` -> ``aachen_000000_000019_leftImg8bit.png``).

``<name>`` keeps the image's path relative to the folder given (sub-folders are kept), without
its extension.
"""
import os

import cv2
import numpy as np
import paddle

from ..datasets.base import Compose, read_image, to_chw
from ..datasets.meta import CITYSCAPES_LABELS
from ..datasets.transforms import find_normalize
from ..utils.errors import ConfigError, DataError
from ..utils.logger import logger
from .inference import inference
from .visual import colorize, overlay, save_palette_png

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')
OUTPUT_FORMATS = ('paddleseg', 'cityscapes')


def cityscapes_label_ids(train_ids):
    """19 Cityscapes train ids -> the official label ids (anything else -> 0, ``unlabeled``)."""
    lut = np.zeros(256, dtype=np.uint8)
    for lab in CITYSCAPES_LABELS:
        if 0 <= lab.train_id < 255:
            lut[lab.train_id] = lab.id
    ids = np.asarray(train_ids)
    return np.where((ids >= 0) & (ids < 256), lut[np.clip(ids, 0, 255)], 0).astype(np.uint8)


def list_images(image_path):
    """``(paths, root)``: one image, every image under a folder (sorted, recursive), or the
    lines of a ``.txt`` list. ``root`` is the folder names are made relative to."""
    if os.path.isdir(image_path):
        paths = []
        for dirpath, _, files in os.walk(image_path):
            paths += [os.path.join(dirpath, f) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)]
        if not paths:
            raise DataError(f'--image_path {image_path!r}: no {"/".join(IMAGE_EXTENSIONS)} images in this folder')
        return sorted(paths), image_path
    if not os.path.isfile(image_path):
        raise DataError(f'--image_path {image_path!r} does not exist (expected an image, a folder or a .txt list)')
    if image_path.lower().endswith('.txt'):
        root = os.path.dirname(image_path)
        with open(image_path, 'r', encoding='utf-8') as f:
            paths = [ln.split()[0] for ln in f if ln.strip()]
        paths = [p if os.path.isabs(p) else os.path.join(root, p) for p in paths]
        if not paths:
            raise DataError(f'--image_path {image_path!r}: the list is empty')
        return paths, root
    if not image_path.lower().endswith(IMAGE_EXTENSIONS):
        raise DataError(f'--image_path {image_path!r}: expected one of {", ".join(IMAGE_EXTENSIONS)}')
    return [image_path], os.path.dirname(image_path)


def predict_image(model, path, transforms, test_kwargs=None):
    """``(rgb HxWx3 uint8, prediction HxW int64)`` for one image file."""
    img = read_image(path)
    sample = transforms({'img': img, 'label': None, 'img_path': path, 'label_path': None})
    x = paddle.to_tensor(to_chw(sample['img'])[None])
    logits = inference(model, x, ori_shape=img.shape[:2], valid_shape=sample.get('valid_shape'), image=img,
                       normalize=find_normalize(transforms), **(test_kwargs or {}))
    return img, paddle.argmax(logits, axis=1).numpy()[0].astype('int64')


def predict(model, image_path, transforms, save_dir, palette, test_kwargs=None, alpha=0.4, output_format='paddleseg'):
    """Predict every image of ``image_path`` and write the two PaddleSeg outputs; returns the
    list of ``(pseudo_color_png, added_jpg)`` written (``output_format='cityscapes'``: the
    label-id PNGs, see the module docstring)."""
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f'--format: expected one of {", ".join(OUTPUT_FORMATS)}, got {output_format!r}')
    num_classes = getattr(model, 'num_classes', None)
    if output_format == 'cityscapes' and num_classes not in (None, 19):
        raise ConfigError(f'--format cityscapes: the model predicts {num_classes} classes; Cityscapes label ids '
                          'need the 19 Cityscapes train ids')
    if not isinstance(transforms, Compose):
        transforms = Compose(transforms)
    paths, root = list_images(image_path)
    written = []
    model.eval()
    from .progress import Progress
    bar = Progress(len(paths), 'predict')
    with paddle.no_grad():
        for path in paths:
            img, pred = predict_image(model, path, transforms, test_kwargs)
            bar.update()
            name = os.path.splitext(os.path.relpath(path, root) if root else os.path.basename(path))[0]
            if output_format == 'cityscapes':
                out = os.path.join(save_dir, 'cityscapes_results', name + '.png')
                os.makedirs(os.path.dirname(out), exist_ok=True)
                if pred.max(initial=0) > 18:
                    raise DataError(f'{path}: predicted class {int(pred.max())} is not a Cityscapes train id (0..18)')
                cv2.imwrite(out, cityscapes_label_ids(pred))
                written.append((out,))
                continue
            pseudo = os.path.join(save_dir, 'pseudo_color_prediction', name + '.png')
            added = os.path.join(save_dir, 'added_prediction', name + '.jpg')
            for p in (pseudo, added):
                os.makedirs(os.path.dirname(p), exist_ok=True)
            save_palette_png(pseudo, pred, palette)
            blended = overlay(img, colorize(pred, palette), alpha)
            cv2.imwrite(added, blended[:, :, ::-1])
            written.append((pseudo, added))
    bar.close()
    logger.info(f'predicted {len(written)} image(s); results in {save_dir}')
    return written


def load_trained_model(cfg, model_path):
    """Build the config's model and load trained weights into it (every key must match).

    ``model_path`` is a file, a URL or a weights-table name (``tools/convert_weights.py
    --list``; a foreign checkpoint is converted on the way). The model is built without its
    ``pretrained`` weights (the trained ones replace them: no ImageNet download), and a
    local file is checked before the model is built, so a wrong path fails at once.
    """
    from ..builder import build_model
    from ..models.convert import load_weights
    from ..models.weights import lookup_weights, without_pretrained
    from ..utils.download import is_url
    from ..utils.errors import CheckpointError
    if model_path is None:
        raise CheckpointError('--model_path is required (the trained weights, e.g. output/best_model/model.pdparams)')
    remote = is_url(model_path) or lookup_weights(model_path) is not None
    if not remote and not os.path.isfile(model_path):
        raise CheckpointError(f'--model_path {model_path!r} does not exist (expected a model.pdparams file)')
    model = build_model(without_pretrained(cfg))
    load_weights(model, model_path, strict=True, what='--model_path')
    model.eval()
    return model
