"""Write ``pixels_paddleseg.json``: what PaddleSeg 2.8.0's val transforms feed the network.

Run by hand in the PaddleSeg reference environment (paddlepaddle 3.2.2, paddleseg 2.8.0,
numpy<2, opencv-python 4.5.5), from the repository root:

    /work/scratch/envs/paddleseg/bin/python tests/manifests/pixels_paddleseg.py

For PaddleSeg 2.8.0's ``configs/_base_/cityscapes.yml`` (val: ``Normalize``) and
``configs/_base_/pascal_voc12.yml`` (val: ``Padding: target_size [512, 512]`` (127.5), then
``Normalize``) (the config files are not in the wheel; their val transforms are written out in
``VAL_TRANSFORMS`` below) and each size of ``pixel_cases.SIZES``: the generated PNG through
PaddleSeg's own ``paddleseg.transforms.Compose`` (which reads it with ``cv2.imread(...)
.astype('float32')`` and converts BGR to RGB) as its ``Dataset.__getitem__`` does in val mode,
stored as ``pixel_cases.digests`` with the padded size and PaddleSeg's ``trans_info``.
"""
import os
import sys
import tempfile


HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'pixels_paddleseg.json')
sys.path.insert(0, HERE)

import pixel_cases as pc  # noqa: E402

VAL_TRANSFORMS = {'paddleseg/cityscapes': [{'type': 'Normalize'}],
                  'paddleseg/voc12aug': [{'type': 'Padding', 'target_size': [512, 512]}, {'type': 'Normalize'}]}
MEAN, STD = [127.5] * 3, [127.5] * 3  # PaddleSeg's Normalize default (0.5, 0.5) in 0-255 units


def main():
    import cv2
    import paddle
    import paddleseg
    from paddleseg.cvlibs import manager
    from paddleseg.transforms import Compose
    val = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, spec in VAL_TRANSFORMS.items():
            compose = Compose([manager.TRANSFORMS[t['type']](**{k: v for k, v in t.items() if k != 'type'})
                               for t in spec])

            def network_input(png):
                data = compose({'img': png, 'label': None, 'trans_info': [], 'gt_fields': []})
                return data['img'], {'trans_info': [[t[0], list(t[1])] for t in data['trans_info']]}

            val[key] = {'reference': pc.REFERENCES[key], 'transforms': spec, 'mean': MEAN, 'std': STD,
                        **pc.record_val(key, tmp, network_input, MEAN, STD)}
    pc.save_manifest(OUT, 'tests/manifests/pixels_paddleseg.py',
                     {'paddleseg': paddleseg.__version__, 'paddlepaddle': paddle.__version__,
                      'opencv': cv2.__version__}, val=val)


if __name__ == '__main__':
    main()
