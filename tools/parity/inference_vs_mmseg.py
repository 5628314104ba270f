"""Parity of zoo.engine.inference with mmseg 1.2.2 (slide_inference, SegTTAModel.merge_preds).
Run with /tmp/refenv/bin/python. Torch side computes; our side runs in a paddle subprocess-free way:
we save the input and weights, and compare against outputs produced by this repository's
tools/parity/inference_ours_for_mmseg.py (run with the project's Python) separately."""
import os
import sys

import numpy as np
import torch
import torch.nn as tnn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mmseg_env import stub_mmcv_ext  # noqa: E402

stub_mmcv_ext()
from mmseg.models.segmentors.encoder_decoder import EncoderDecoder
from mmseg.models.segmentors.seg_tta import SegTTAModel
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData

d = np.load('parity_mm_in.npz')
x = torch.from_numpy(d['x'])
conv = tnn.Conv2d(3, 5, 3, padding=1)
conv.weight.data = torch.from_numpy(d['w'])
conv.bias.data = torch.from_numpy(d['b'])


def posnet(t):
    h, w = t.shape[2:]
    rows = torch.arange(h, dtype=torch.float32).reshape(1, 1, h, 1).expand(1, 1, h, w)
    cols = torch.arange(w, dtype=torch.float32).reshape(1, 1, 1, w).expand(1, 1, h, w)
    return conv(t) + torch.cat([0.05 * rows, 0.03 * cols, torch.zeros(1, 3, h, w)], 1)


class Fake:
    out_channels = 5
    class test_cfg:
        crop_size = (24, 16)  # (h, w) in mmseg
        stride = (16, 12)

    def encode_decode(self, inputs, metas):
        return posnet(inputs)


fake = Fake()
with torch.no_grad():
    slide = EncoderDecoder.slide_inference(fake, x, [{}])
    flipped = EncoderDecoder.slide_inference(fake, x.flip(3), [{}]).flip(3)
    samples = [SegDataSample(seg_logits=PixelData(data=s[0]), gt_sem_seg=PixelData(data=torch.zeros(1, 1, 1)), metainfo={'img_path': 'x.png'})
               for s in (slide, flipped)]
    tta = SegTTAModel.__new__(SegTTAModel)
    tnn.Module.__init__(tta)
    tta.module = fake
    pred = SegTTAModel.merge_preds(tta, [samples])[0].pred_sem_seg.data
    merged = (slide[0].softmax(0) + flipped[0].softmax(0)) / 2  # what merge_preds accumulates
np.savez('parity_mm_out.npz', slide=slide.numpy(), tta=merged.numpy(), tta_pred=pred.numpy())
print('mmseg outputs written', slide.shape, merged.shape)
