"""Write ``mcibi_vit_sssegmentation.json`` from the exchange file of
``tests/manifests/mcibi_vit_parity.py`` (sssegmentation 1.7.0's MCIBI with the ViT-L ADE20K config).

Run by hand after the parity script, with any Python (no torch needed here):

    cd /tmp/some_dir && /tmp/refenv/bin/python /path/to/repo/tests/manifests/mcibi_vit_parity.py
    python tests/manifests/mcibi_vit_sssegmentation.py /tmp/some_dir/mcibi_vit_parity.json

It records
* ``names``: the reference MCIBI state dict's names and shapes (150 classes; COCO-Stuff's 182
  change only the class dimension of the memory and the classifiers), ``backbone_net.*`` in
  sssegmentation's ViT names (torch [out, in] linear weights), the segmentor-level
  ``norm_layers.<i>`` and ``auxiliary_decoder.<0..2>.<0..9>``;
* ``parity``: the script's measured differences (whole network float32 / float64, head and
  auxiliary decoders on the reference's features).
``tests/test_mcibi.py`` reads it without torch.
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'mcibi_vit_sssegmentation.json')


def main(argv):
    src = argv[0] if argv else 'mcibi_vit_parity.json'
    with open(src) as f:
        ex = json.load(f)
    doc = {
        'produced_by': f'{ex["produced_by"]} -> tests/manifests/mcibi_vit_sssegmentation.py',
        'reference': ex['reference'],
        'date': ex['date'],
        'versions': ex['versions'],
        'num_classes': ex['parity']['num_classes'],
        'parity': ex['parity'],
        'names': ex['names'],
    }
    with open(OUT, 'w') as f:
        json.dump(doc, f, indent=0, sort_keys=False)
    print('wrote', OUT, len(doc['names']), 'names')


if __name__ == '__main__':
    main(sys.argv[1:])
