"""Class names and palettes of every dataset, in the order of the reference implementations.

Loaders take their defaults from here (``Dataset.CLASSES`` / ``PALETTE``); a config may replace
them (``class_names:`` / ``palette:`` in a dataset section, see configs/_base_/custom.yml), and
every dataset object then exposes the result as ``dataset.class_names`` (``num_classes``
strings) and ``dataset.palette`` (``num_classes`` ``[r, g, b]`` lists), which val's per-class
table, VisualDL images, ``predict.py`` and ``deploy.yaml`` use. Without names or colours a
dataset gets its class ids (``'0', '1', ...``) and the VOC colour map.

Sources: Cityscapes, ADE20K, COCO-Stuff (171), LIP, VOC names: mmsegmentation's dataset classes;
CamVid: RegSeg's ``datasets/camvid.py`` (11 classes, its order and colours); COCO-Stuff 182:
sssegmentation's ``COCOStuff10kDataset`` order (COCO ids 1..182).
"""
from collections import namedtuple
from typing import NamedTuple

import numpy as np

from ..utils.errors import ConfigError
from ..utils.registry import DATASETS


def voc_palette(n=256):
    """The PASCAL VOC colour map (bits of the index interleaved into r, g, b; PaddleSeg's default
    too): ``[n, 3]`` uint8, class 0 black, neighbouring ids far apart in colour."""
    pal = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal[i] = (r, g, b)
    return pal


CityscapesLabel = namedtuple('CityscapesLabel', ['name', 'id', 'train_id'])

# The official label table (cityscapesScripts helpers/labels.py): name, id, trainId.
# 19 evaluated classes get trainIds 0..18, everything else 255.
CITYSCAPES_LABELS = (
    CityscapesLabel('unlabeled', 0, 255),
    CityscapesLabel('ego vehicle', 1, 255),
    CityscapesLabel('rectification border', 2, 255),
    CityscapesLabel('out of roi', 3, 255),
    CityscapesLabel('static', 4, 255),
    CityscapesLabel('dynamic', 5, 255),
    CityscapesLabel('ground', 6, 255),
    CityscapesLabel('road', 7, 0),
    CityscapesLabel('sidewalk', 8, 1),
    CityscapesLabel('parking', 9, 255),
    CityscapesLabel('rail track', 10, 255),
    CityscapesLabel('building', 11, 2),
    CityscapesLabel('wall', 12, 3),
    CityscapesLabel('fence', 13, 4),
    CityscapesLabel('guard rail', 14, 255),
    CityscapesLabel('bridge', 15, 255),
    CityscapesLabel('tunnel', 16, 255),
    CityscapesLabel('pole', 17, 5),
    CityscapesLabel('polegroup', 18, 255),
    CityscapesLabel('traffic light', 19, 6),
    CityscapesLabel('traffic sign', 20, 7),
    CityscapesLabel('vegetation', 21, 8),
    CityscapesLabel('terrain', 22, 9),
    CityscapesLabel('sky', 23, 10),
    CityscapesLabel('person', 24, 11),
    CityscapesLabel('rider', 25, 12),
    CityscapesLabel('car', 26, 13),
    CityscapesLabel('truck', 27, 14),
    CityscapesLabel('bus', 28, 15),
    CityscapesLabel('caravan', 29, 255),
    CityscapesLabel('trailer', 30, 255),
    CityscapesLabel('train', 31, 16),
    CityscapesLabel('motorcycle', 32, 17),
    CityscapesLabel('bicycle', 33, 18),
    CityscapesLabel('license plate', -1, -1),
)
CITYSCAPES_CLASSES = ('road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
                      'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck',
                      'bus', 'train', 'motorcycle', 'bicycle')
CITYSCAPES_PALETTE = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
                      (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
                      (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
                      (0, 80, 100), (0, 0, 230), (119, 11, 32))
ADE20K_CLASSES = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed', 'windowpane', 'grass',
    'cabinet', 'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant', 'curtain',
    'chair', 'car', 'water', 'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror', 'rug', 'field',
    'armchair', 'seat', 'fence', 'desk', 'rock', 'wardrobe', 'lamp', 'bathtub', 'railing',
    'cushion', 'base', 'box', 'column', 'signboard', 'chest of drawers', 'counter', 'sand', 'sink',
    'skyscraper', 'fireplace', 'refrigerator', 'grandstand', 'path', 'stairs', 'runway', 'case',
    'pool table', 'pillow', 'screen door', 'stairway', 'river', 'bridge', 'bookcase', 'blind',
    'coffee table', 'toilet', 'flower', 'book', 'hill', 'bench', 'countertop', 'stove', 'palm',
    'kitchen island', 'computer', 'swivel chair', 'boat', 'bar', 'arcade machine', 'hovel', 'bus',
    'towel', 'light', 'truck', 'tower', 'chandelier', 'awning', 'streetlight', 'booth',
    'television receiver', 'airplane', 'dirt track', 'apparel', 'pole', 'land', 'bannister',
    'escalator', 'ottoman', 'bottle', 'buffet', 'poster', 'stage', 'van', 'ship', 'fountain',
    'conveyer belt', 'canopy', 'washer', 'plaything', 'swimming pool', 'stool', 'barrel', 'basket',
    'waterfall', 'tent', 'bag', 'minibike', 'cradle', 'oven', 'ball', 'food', 'step', 'tank',
    'trade name', 'microwave', 'pot', 'animal', 'bicycle', 'lake', 'dishwasher', 'screen',
    'blanket', 'sculpture', 'hood', 'sconce', 'vase', 'traffic light', 'tray', 'ashcan', 'fan',
    'pier', 'crt screen', 'plate', 'monitor', 'bulletin board', 'shower', 'radiator', 'glass',
    'clock', 'flag')
ADE20K_PALETTE = (
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80),
    (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7),
    (150, 5, 61), (120, 120, 70), (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4),
    (255, 51, 7), (204, 70, 3), (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255),
    (255, 7, 71), (255, 9, 224), (9, 7, 230), (220, 220, 220), (255, 9, 92), (112, 9, 255),
    (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10), (7, 255, 255),
    (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8), (0, 255, 20),
    (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255),
    (140, 140, 140), (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0),
    (153, 255, 0), (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255),
    (11, 200, 200), (255, 82, 0), (0, 255, 245), (0, 61, 255), (0, 255, 112), (0, 255, 133),
    (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0), (0, 143, 255), (51, 255, 0),
    (0, 82, 255), (0, 255, 41), (0, 255, 173), (10, 0, 255), (173, 255, 0), (0, 255, 153),
    (255, 92, 0), (255, 0, 255), (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20),
    (255, 184, 184), (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),
    (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255), (0, 122, 255),
    (0, 255, 163), (255, 153, 0), (0, 255, 10), (255, 112, 0), (143, 255, 0), (82, 0, 255),
    (163, 255, 0), (255, 235, 0), (8, 184, 170), (133, 0, 255), (0, 255, 92), (184, 0, 255),
    (255, 0, 31), (0, 184, 255), (0, 214, 255), (255, 0, 112), (92, 255, 0), (0, 224, 255),
    (112, 224, 255), (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0), (255, 0, 163),
    (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235), (245, 0, 255),
    (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0), (0, 204, 255), (20, 0, 255),
    (255, 255, 0), (0, 153, 255), (0, 41, 255), (0, 255, 204), (41, 0, 255), (41, 255, 0),
    (173, 0, 255), (0, 245, 255), (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255),
    (184, 255, 0), (0, 133, 255), (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255))

# COCO-Stuff, 171 classes (mmseg: the 11 never-annotated thing ids dropped, the rest renumbered)
COCOSTUFF_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog',
    'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella',
    'handbag', 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle',
    'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
    'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
    'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone',
    'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock', 'vase', 'scissors',
    'teddy bear', 'hair drier', 'toothbrush', 'banner', 'blanket', 'branch', 'bridge',
    'building-other', 'bush', 'cabinet', 'cage', 'cardboard', 'carpet', 'ceiling-other',
    'ceiling-tile', 'cloth', 'clothes', 'clouds', 'counter', 'cupboard', 'curtain', 'desk-stuff',
    'dirt', 'door-stuff', 'fence', 'floor-marble', 'floor-other', 'floor-stone', 'floor-tile',
    'floor-wood', 'flower', 'fog', 'food-other', 'fruit', 'furniture-other', 'grass', 'gravel',
    'ground-other', 'hill', 'house', 'leaves', 'light', 'mat', 'metal', 'mirror-stuff', 'moss',
    'mountain', 'mud', 'napkin', 'net', 'paper', 'pavement', 'pillow', 'plant-other', 'plastic',
    'platform', 'playingfield', 'railing', 'railroad', 'river', 'road', 'rock', 'roof', 'rug',
    'salad', 'sand', 'sea', 'shelf', 'sky-other', 'skyscraper', 'snow', 'solid-other', 'stairs',
    'stone', 'straw', 'structural-other', 'table', 'tent', 'textile-other', 'towel', 'tree',
    'vegetable', 'wall-brick', 'wall-concrete', 'wall-other', 'wall-panel', 'wall-stone',
    'wall-tile', 'wall-wood', 'water-other', 'waterdrops', 'window-blind', 'window-other', 'wood')
COCOSTUFF_PALETTE = (
    (0, 192, 64), (0, 192, 64), (0, 64, 96), (128, 192, 192), (0, 64, 64), (0, 192, 224),
    (0, 192, 192), (128, 192, 64), (0, 192, 96), (128, 192, 64), (128, 32, 192), (0, 0, 224),
    (0, 0, 64), (0, 160, 192), (128, 0, 96), (128, 0, 192), (0, 32, 192), (128, 128, 224),
    (0, 0, 192), (128, 160, 192), (128, 128, 0), (128, 0, 32), (128, 32, 0), (128, 0, 128),
    (64, 128, 32), (0, 160, 0), (0, 0, 0), (192, 128, 160), (0, 32, 0), (0, 128, 128),
    (64, 128, 160), (128, 160, 0), (0, 128, 0), (192, 128, 32), (128, 96, 128), (0, 0, 128),
    (64, 0, 32), (0, 224, 128), (128, 0, 0), (192, 0, 160), (0, 96, 128), (128, 128, 128),
    (64, 0, 160), (128, 224, 128), (128, 128, 64), (192, 0, 32), (128, 96, 0), (128, 0, 192),
    (0, 128, 32), (64, 224, 0), (0, 0, 64), (128, 128, 160), (64, 96, 0), (0, 128, 192),
    (0, 128, 160), (192, 224, 0), (0, 128, 64), (128, 128, 32), (192, 32, 128), (0, 64, 192),
    (0, 0, 32), (64, 160, 128), (128, 64, 64), (128, 0, 160), (64, 32, 128), (128, 192, 192),
    (0, 0, 160), (192, 160, 128), (128, 192, 0), (128, 0, 96), (192, 32, 0), (128, 64, 128),
    (64, 128, 96), (64, 160, 0), (0, 64, 0), (192, 128, 224), (64, 32, 0), (0, 192, 128),
    (64, 128, 224), (192, 160, 0), (0, 192, 0), (192, 128, 96), (192, 96, 128), (0, 64, 128),
    (64, 0, 96), (64, 224, 128), (128, 64, 0), (192, 0, 224), (64, 96, 128), (128, 192, 128),
    (64, 0, 224), (192, 224, 128), (128, 192, 64), (192, 0, 96), (192, 96, 0), (128, 64, 192),
    (0, 128, 96), (0, 224, 0), (64, 64, 64), (128, 128, 224), (0, 96, 0), (64, 192, 192),
    (0, 128, 224), (128, 224, 0), (64, 192, 64), (128, 128, 96), (128, 32, 128), (64, 0, 192),
    (0, 64, 96), (0, 160, 128), (192, 0, 64), (128, 64, 224), (0, 32, 128), (192, 128, 192),
    (0, 64, 224), (128, 160, 128), (192, 128, 0), (128, 64, 32), (128, 32, 64), (192, 0, 128),
    (64, 192, 32), (0, 160, 64), (64, 0, 0), (192, 192, 160), (0, 32, 64), (64, 128, 128),
    (64, 192, 160), (128, 160, 64), (64, 128, 0), (192, 192, 32), (128, 96, 192), (64, 0, 128),
    (64, 64, 32), (0, 224, 192), (192, 0, 0), (192, 64, 160), (0, 96, 192), (192, 128, 128),
    (64, 64, 160), (128, 224, 192), (192, 128, 64), (192, 64, 32), (128, 96, 64), (192, 0, 192),
    (0, 192, 32), (64, 224, 64), (64, 0, 64), (128, 192, 160), (64, 96, 64), (64, 128, 192),
    (0, 192, 160), (192, 224, 64), (64, 128, 64), (128, 192, 32), (192, 32, 192), (64, 64, 192),
    (0, 64, 32), (64, 160, 192), (192, 64, 64), (128, 64, 160), (64, 32, 192), (192, 192, 192),
    (0, 64, 160), (192, 160, 192), (192, 192, 0), (128, 64, 96), (192, 32, 64), (192, 64, 128),
    (64, 192, 96), (64, 160, 64), (64, 64, 0))

# 1-based COCO thing ids that have no annotation in COCO-Stuff (street sign, hat, shoe, eye
# glasses, plate, mirror, window, desk, door, blender, hair brush).
COCOSTUFF_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)
COCOSTUFF_NUM_RAW_IDS = 182
# COCO-Stuff, 182 classes (sssegmentation: train id = COCO id - 1; the unused ids stay, never occurring)
COCOSTUFF182_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'street sign', 'stop sign', 'parking meter', 'bench', 'bird',
    'cat', 'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'hat',
    'backpack', 'umbrella', 'shoe', 'eye glasses', 'handbag', 'tie', 'suitcase', 'frisbee', 'skis',
    'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove', 'skateboard',
    'surfboard', 'tennis racket', 'bottle', 'plate', 'wine glass', 'cup', 'fork', 'knife', 'spoon',
    'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza',
    'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed', 'mirror', 'dining table', 'window',
    'desk', 'toilet', 'door', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone',
    'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'blender', 'book', 'clock', 'vase',
    'scissors', 'teddy bear', 'hair drier', 'toothbrush', 'hair brush', 'banner', 'blanket',
    'branch', 'bridge', 'building-other', 'bush', 'cabinet', 'cage', 'cardboard', 'carpet',
    'ceiling-other', 'ceiling-tile', 'cloth', 'clothes', 'clouds', 'counter', 'cupboard',
    'curtain', 'desk-stuff', 'dirt', 'door-stuff', 'fence', 'floor-marble', 'floor-other',
    'floor-stone', 'floor-tile', 'floor-wood', 'flower', 'fog', 'food-other', 'fruit',
    'furniture-other', 'grass', 'gravel', 'ground-other', 'hill', 'house', 'leaves', 'light',
    'mat', 'metal', 'mirror-stuff', 'moss', 'mountain', 'mud', 'napkin', 'net', 'paper',
    'pavement', 'pillow', 'plant-other', 'plastic', 'platform', 'playingfield', 'railing',
    'railroad', 'river', 'road', 'rock', 'roof', 'rug', 'salad', 'sand', 'sea', 'shelf',
    'sky-other', 'skyscraper', 'snow', 'solid-other', 'stairs', 'stone', 'straw',
    'structural-other', 'table', 'tent', 'textile-other', 'towel', 'tree', 'vegetable',
    'wall-brick', 'wall-concrete', 'wall-other', 'wall-panel', 'wall-stone', 'wall-tile',
    'wall-wood', 'water-other', 'waterdrops', 'window-blind', 'window-other', 'wood')


def _cocostuff182_palette():
    """mmseg's colours at their COCO ids; the 11 unused ids get black."""
    used = iter(COCOSTUFF_PALETTE)
    return tuple((0, 0, 0) if i in COCOSTUFF_UNUSED_IDS else next(used) for i in range(1, COCOSTUFF_NUM_RAW_IDS + 1))


COCOSTUFF182_PALETTE = _cocostuff182_palette()

LIP_CLASSES = (
    'Background', 'Hat', 'Hair', 'Glove', 'Sunglasses', 'UpperClothes', 'Dress', 'Coat', 'Socks',
    'Pants', 'Jumpsuits', 'Scarf', 'Skirt', 'Face', 'Left-arm', 'Right-arm', 'Left-leg',
    'Right-leg', 'Left-shoe', 'Right-shoe')
LIP_PALETTE = (
    (0, 0, 0), (128, 0, 0), (255, 0, 0), (0, 85, 0), (170, 0, 51), (255, 85, 0), (0, 0, 85),
    (0, 119, 221), (85, 85, 0), (0, 85, 85), (85, 51, 0), (52, 86, 128), (0, 128, 0), (0, 0, 255),
    (51, 170, 221), (0, 255, 255), (85, 255, 170), (170, 255, 85), (255, 255, 0), (255, 170, 0))
VOC_CLASSES = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
    'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
    'train', 'tvmonitor')
VOC_PALETTE = tuple(tuple(int(c) for c in rgb) for rgb in voc_palette(21))
# RGB colour of each class, also the colours of the CamVid colour labels (RegSeg datasets/camvid.py)
CAMVID_CLASSES = ('Building', 'Tree', 'Sky', 'Car', 'SignSymbol', 'Road', 'Pedestrian', 'Fence',
                  'Column_Pole', 'Sidewalk', 'Bicyclist')
CAMVID_PALETTE = ((128, 0, 0), (128, 128, 0), (128, 128, 128), (64, 0, 128), (192, 128, 128), (128, 64, 128),
                  (64, 64, 0), (64, 64, 128), (192, 192, 128), (0, 0, 192), (0, 128, 192))
# the generated demo dataset (zoo/datasets/prepare/demo.py)
DEMO_CLASSES = ('background', 'disc', 'rectangle', 'triangle', 'ring', 'cross')
DEMO_PALETTE = ((110, 110, 110), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (145, 30, 180))


def resolve_meta(num_classes, class_names=None, palette=None, default_names=None, default_palette=None,
                 where='dataset'):
    """``(class_names, palette)`` of a dataset: the given ones (checked) or the defaults.

    ``class_names``/``palette`` come from the config and must have exactly ``num_classes``
    entries (a ConfigError naming ``where`` otherwise). Defaults of another length (a loader
    used with a different ``num_classes``) are cut or completed with class ids and VOC colours.
    """
    n = int(num_classes)
    if class_names is not None:
        names = list(class_names)
        if len(names) != n or not all(isinstance(s, str) and s for s in names):
            raise ConfigError(f'{where}.class_names: expected {n} non-empty names (num_classes), got {len(names)}')
    else:
        names = [str(s) for s in (default_names or ())][:n]
        names += [str(i) for i in range(len(names), n)]
    generated = voc_palette(max(n, 1)).astype(int).tolist()[:n]
    if palette is not None:
        colors = [list(c) if isinstance(c, (list, tuple)) else c for c in palette]
        ok = len(colors) == n and all(isinstance(c, list) and len(c) == 3 and
                                      all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in c)
                                      for c in colors)
        if not ok:
            raise ConfigError(f'{where}.palette: expected {n} [r, g, b] triples of integers in 0..255 (one per class)')
    else:
        colors = [[int(v) for v in c] for c in (default_palette or ())][:n]
        colors += generated[len(colors):]
    return names, colors


class DatasetMeta(NamedTuple):
    class_names: list
    palette: list


def config_meta(cfg):
    """Class names and palette of the config's dataset (val, else train) without reading any data
    (``predict.py`` and export run where the dataset may not exist); None if unknown. The same
    values as the built dataset's ``class_names`` / ``palette``."""
    for key in ('val_dataset', 'train_dataset'):
        node = cfg.dic.get(key)
        while isinstance(node, dict) and isinstance(node.get('dataset'), dict):  # wrappers (ClassUniformDataset)
            node = node['dataset']
        if not isinstance(node, dict) or node.get('type') not in DATASETS:
            continue
        cls = DATASETS[node['type']]
        n = node.get('num_classes') or getattr(cls, 'NUM_CLASSES', None)
        if n is None or not hasattr(cls, 'default_meta'):
            continue
        names, palette = cls.default_meta(n)
        return DatasetMeta(*resolve_meta(n, node.get('class_names'), node.get('palette'), names, palette,
                                         where=cfg.where(key)))
    return None
