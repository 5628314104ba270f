import os
import sys
import numpy as np
import paddle
import paddle.nn as nn
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repository
from zoo.engine.inference import inference  # noqa: E402
rng = np.random.default_rng(0)
x = rng.normal(size=(1, 3, 37, 53)).astype('float32')
w = (0.2 * rng.normal(size=(5, 3, 3, 3))).astype('float32')
b = (0.1 * rng.normal(size=5)).astype('float32')
if sys.argv[1] == 'prepare':
    np.savez('parity_mm_in.npz', x=x, w=w, b=b)
    sys.exit()

class PosNet(nn.Layer):
    align_corners = False
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2D(3, 5, 3, padding=1)
        self.conv.weight.set_value(w); self.conv.bias.set_value(b)
    def forward(self, t):
        h, ww = t.shape[2], t.shape[3]
        rows = paddle.arange(h, dtype='float32').reshape([1, 1, h, 1]).expand([1, 1, h, ww])
        cols = paddle.arange(ww, dtype='float32').reshape([1, 1, 1, ww]).expand([1, 1, h, ww])
        return [self.conv(t) + paddle.concat([0.05 * rows, 0.03 * cols, paddle.zeros([1, 3, h, ww])], 1)]

m = PosNet(); ref = np.load('parity_mm_out.npz')
with paddle.no_grad():
    xs = paddle.to_tensor(x)
    slide = inference(m, xs, mode='slide', crop_size=(24, 16), stride=(16, 12)).numpy()
    tta = inference(m, xs, mode='slide', crop_size=(24, 16), stride=(16, 12), flip_horizontal=True).numpy()[0]
for name, a, r in (('slide', slide, ref['slide']), ('slide+flip TTA (softmax mean)', tta, ref['tta'])):
    print(f'{name:30s} max|diff| {np.abs(a - r).max():.2e}  same argmax {(a.argmax(-3) == r.argmax(-3)).all()}')
print(f'TTA argmax == mmseg merge_preds pred_sem_seg: {(tta.argmax(0) == ref["tta_pred"].reshape(tta.shape[1:])).all()}')
