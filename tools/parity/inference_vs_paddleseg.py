"""Parity of zoo.engine.inference with PaddleSeg 2.8.0's core/infer.py (run with /tmp/pdsegenv/bin/python)."""
import os
import sys
import numpy as np
import paddle
import paddle.nn as nn
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository
from paddleseg.core import infer as ps  # noqa: E402
from zoo.engine.inference import inference  # noqa: E402


class PosNet(nn.Layer):
    align_corners = False

    def __init__(self):
        super().__init__()
        paddle.seed(0)
        self.conv = nn.Conv2D(3, 5, 3, padding=1)

    def forward(self, x):
        h, w = x.shape[2], x.shape[3]
        rows = paddle.arange(h, dtype='float32').reshape([1, 1, h, 1]).expand([1, 1, h, w])
        cols = paddle.arange(w, dtype='float32').reshape([1, 1, 1, w]).expand([1, 1, h, w])
        ramp = paddle.concat([0.05 * rows, 0.03 * cols, paddle.zeros([1, 3, h, w])], axis=1)
        return [self.conv(x) + ramp]


paddle.set_device('cpu')
model = PosNet()
model.eval()
x = paddle.to_tensor(np.random.default_rng(0).normal(size=(1, 3, 37, 53)).astype('float32'))
worst = 0.0
with paddle.no_grad():
    cases = [
        ('whole', dict(), lambda: ps.inference(model, x)),
        ('slide', dict(mode='slide', crop_size=(16, 24), stride=(12, 16)),
         lambda: ps.inference(model, x, is_slide=True, crop_size=(24, 16), stride=(16, 12))),
        ('slide img<crop', dict(mode='slide', crop_size=(40, 24), stride=(20, 16)),
         lambda: ps.inference(model, x, is_slide=True, crop_size=(24, 40), stride=(16, 20))),
        ('ms+flip whole', dict(scales=(0.75, 1.0, 1.25), flip_horizontal=True, flip_vertical=True, merge='logits'),
         lambda: ps.aug_inference(model, x, [], scales=[0.75, 1.0, 1.25], flip_horizontal=True,
                                  flip_vertical=True)[1]),
        ('ms+flip slide', dict(mode='slide', crop_size=(16, 24), stride=(12, 16), scales=(0.5, 1.0, 1.5),
                               flip_horizontal=True, merge='logits'),
         lambda: ps.aug_inference(model, x, [], scales=[0.5, 1.0, 1.5], flip_horizontal=True, is_slide=True,
                                  crop_size=(24, 16), stride=(16, 12))[1]),
    ]
    for name, kw, ref in cases:
        ours = inference(model, x, **kw).numpy()
        theirs = np.asarray(ref().numpy(), dtype=np.float32)
        d = float(np.abs(ours - theirs).max())
        same_pred = bool((ours.argmax(1) == theirs.argmax(1)).all())
        worst = max(worst, d)
        print(f'{name:16s} max|diff| {d:.2e}  same argmax {same_pred}')
print('worst', worst)
