"""Write ``mcibi_backbones_sssegmentation.json``: sssegmentation's ResNeSt-101, HRNetV2-W48 and
ViT-L/16 backbones (MCIBI's S-101-D8 / HRNetV2p-W48 / ViT-Large rows) + our import parity.

Run by hand in the reference environment (torch + sssegmentation 1.7.0 installed --no-deps +
paddle), not by ``make test`` (which reads the JSON):

    PYTHONPATH=/work/main /tmp/refenv/bin/python tests/manifests/mcibi_backbones_sssegmentation.py

For each backbone it records the reference state-dict names and shapes (``models``) and the
max |difference| of every output between sssegmentation's own module and ours after
conversion (``parity``): random weights (BN affine and statistics randomised, statistics then
calibrated by forward passes in train mode, PLATFORM.md), eval mode.

* ResNeSt-101 (``outstride`` 8, the reference defaults) at 1x3x512x512, all four stages;
* HRNetV2-W48 at 1x3x512x512, and with ``mcibi_version`` (added to sssegmentation after 1.7.0:
  the stem's first ReLU is skipped; emulated here by a ReLU that passes its first call of each
  forward through, the reference ``forward`` calls ``self.relu`` exactly twice) followed by the
  MCIBI head's ``downsample_backbone`` (3x3 conv stride 2 + BN + ReLU, built as the reference
  segmentor builds it) at 1x3x512x1024;
* ViT-L/16 at 1x3x512x512, imported the way a user does: a timm-format ImageNet checkpoint
  (24x24 position grid, as ``jx_vit_large_p16_384``; made from random weights by inverting the
  reference's ``vitconvert``, checked to map back) loaded by the reference's own
  ``loadpretrainedweights`` (its ``vitconvert`` + ``resizeposembed``) and by our
  ``pretrained=`` path; outputs of layers (9, 14, 19, 23) each through a LayerNorm (the MCIBI
  segmentor's ``norm_layers`` and ``norm``); plus one odd-sized input (1x3x500x520:
  adaptive padding and position-embedding resizing).

``--outputs`` (torch and sssegmentation only, no Paddle) writes
``mcibi_backbones_sssegmentation.npz``: with seeded float64 weights (``seeded.py``) and seeded
inputs, ResNeSt-101 (1x3x64x64, four stages), HRNetV2-W48 (1x3x64x64) and HRNetV2-W48 with
``mcibi_version`` + the downsample conv (1x3x64x128), and a narrow ViT (width 64, 6 layers,
4 heads, outputs of layers 2-5 through the MCIBI ``norm_layers``; ViT-L's code with less
arithmetic) at its 128x128 ``img_size`` and at 1x3x100x140 (adaptive padding, position
embeddings resized). ``tests/test_resnest.py``, ``tests/test_hrnet.py`` and ``tests/test_vit.py``
compare ours with them on every run:

    /work/scratch/envs/ssseg/bin/python tests/manifests/mcibi_backbones_sssegmentation.py --outputs
"""
import datetime
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'mcibi_backbones_sssegmentation.json')


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ssseg_env import stub_torchvision  # noqa: E402

stub_torchvision()

import torch  # noqa: E402
import torch.nn as tnn  # noqa: E402
import ssseg  # noqa: E402
from ssseg.modules.models.backbones.hrnet import HRModule as RefHRModule  # noqa: E402
from ssseg.modules.models.backbones.hrnet import HRNet as RefHRNet  # noqa: E402
from ssseg.modules.models.backbones.resnest import ResNeSt as RefResNeSt  # noqa: E402
from ssseg.modules.models.backbones.vit import VisionTransformer as RefViT  # noqa: E402
from ssseg.modules.models.segmentors.mcibi.mcibi import MCIBI as RefMCIBI  # noqa: E402


def _zoo():
    """Paddle and our code, for the parity part (the reference environment needs paddle then)."""
    global paddle, HRNet, ResNeSt, VisionTransformer, check_mapping, imagenet_hrnet_to_ours, imagenet_resnest_to_ours
    import paddle
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    from zoo.models.backbones.hrnet import HRNet
    from zoo.models.backbones.resnest import ResNeSt
    from zoo.models.backbones.vit import VisionTransformer
    from zoo.models.convert import check_mapping, rename

    def importer(kind):
        def convert(sd):
            with paddle.LazyGuard():
                target = HRNet(arch='hrnetv2_w48', downsample_stride=2) if kind == 'hrnet' else ResNeSt(depth=101)
            return rename(target, 'mmseg', sd)
        return convert
    imagenet_hrnet_to_ours, imagenet_resnest_to_ours = importer('hrnet'), importer('resnest')

BN = {'type': 'BatchNorm2d'}
# 1.7.0's HRModule reads self.use_checkpoint before setting it (fixed on the repository's HEAD);
# a class default lets it build (it only chooses torch.utils.checkpoint, off here).
RefHRModule.use_checkpoint = False
torch.manual_seed(0)
np.random.seed(0)


def randomise_bn(model, residual_gamma=None):
    """Random BN affine; ``residual_gamma`` (names ending with it, the last BN of each
    residual branch) gets small scales so the residual stream of 33 blocks stays O(10)
    (as zero-init-residual training starts) instead of growing to 1e5."""
    for n, m in model.named_modules():
        if isinstance(m, tnn.BatchNorm2d):
            with torch.no_grad():
                if residual_gamma and n.endswith(residual_gamma):
                    m.weight.uniform_(0.05, 0.25)
                else:
                    m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def float64_diffs(ref, ours_cls, ours_kw, converter, shape):
    """Max |difference| with both models in float64: rounding aside, the two compute the same
    function, so this isolates mapping errors from float32 summation-order noise."""
    ref = ref.double()
    paddle.set_default_dtype('float64')
    try:
        ours = ours_cls(**ours_kw)
        sd = converter({k: v.detach().cpu().numpy() for k, v in ref.state_dict().items()})
        check_mapping(sd, ours)
        ours.set_state_dict(sd)
        ours.eval()
        x = np.random.randn(*shape)
        r, o = run_both(ref, ours, x)
    finally:
        paddle.set_default_dtype('float32')
        ref.float()
    return max_diffs(r, o)


def calibrate(model, shape, steps=2):
    """Cumulative BN statistics from random inputs (train mode), then eval."""
    for m in model.modules():
        if isinstance(m, tnn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(torch.randn(*shape))
    model.eval()


def manifest(model):
    return {k: list(v.shape) for k, v in model.state_dict().items() if not k.endswith('num_batches_tracked')}


def to_ours(ref_sd, ours, converter):
    sd = converter({k: v.detach().cpu().numpy() for k, v in ref_sd.items()})
    check_mapping(sd, ours)
    ours.set_state_dict(sd)
    ours.eval()


def max_diffs(ref_outs, our_outs):
    assert len(ref_outs) == len(our_outs), (len(ref_outs), len(our_outs))
    out = []
    for r, o in zip(ref_outs, our_outs):
        r = r.detach().numpy()
        o = o.numpy()
        assert r.shape == o.shape, (r.shape, o.shape)
        out.append(float(np.abs(r - o).max()))
    return out


def run_both(ref, ours, x):
    with torch.no_grad():
        r = ref(torch.from_numpy(x))
    with paddle.no_grad():
        o = ours(paddle.to_tensor(x))
    return r, o


def resnest():
    ref = RefResNeSt(structure_type='resnest101', depth=101, outstride=8, norm_cfg=BN, pretrained=False)
    randomise_bn(ref, residual_gamma='bn3')
    calibrate(ref, (2, 3, 128, 128))
    f64 = float64_diffs(ref, ResNeSt, dict(depth=101, output_stride=8), imagenet_resnest_to_ours, (1, 3, 96, 96))
    print('resnest101 float64', f64)
    ours = ResNeSt(depth=101, output_stride=8)
    to_ours(ref.state_dict(), ours, imagenet_resnest_to_ours)
    x = np.random.randn(1, 3, 512, 512).astype('float32')
    r, o = run_both(ref, ours, x)
    diffs = max_diffs(r, o)
    print('resnest101', diffs, [float(t.abs().max()) for t in r])
    return manifest(ref), {'input': [1, 3, 512, 512], 'outputs': [list(t.shape) for t in r],
                           'max_abs_diff': diffs, 'max_abs_ref': [float(t.abs().max()) for t in r],
                           'float64_1x3x96x96_max_abs_diff': f64}


class _SkipFirstReLU(tnn.Module):
    """sssegmentation's ``mcibi_version``: the stem's first ``self.relu`` call is skipped."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x if self.calls % 2 == 1 else torch.relu(x)


def hrnet():
    ref = RefHRNet(structure_type='hrnetv2_w48', arch='hrnetv2_w48', norm_cfg=BN, pretrained=False)
    randomise_bn(ref, residual_gamma=('bn2', 'bn3'))
    calibrate(ref, (2, 3, 128, 128))
    results = {'float64_1x3x96x96_max_abs_diff': float64_diffs(ref, HRNet, dict(arch='hrnetv2_w48'),
                                                               imagenet_hrnet_to_ours, (1, 3, 96, 96))}
    print('hrnet float64', results)
    ours = HRNet(arch='hrnetv2_w48')
    to_ours(ref.state_dict(), ours, imagenet_hrnet_to_ours)
    x = np.random.randn(1, 3, 512, 512).astype('float32')
    r, o = run_both(ref, ours, x)
    results['hrnetv2_w48'] = {'input': list(x.shape), 'outputs': [list(t.shape) for t in r],
                              'max_abs_diff': max_diffs(r, o), 'max_abs_ref': [float(t.abs().max()) for t in r]}
    print('hrnet', results['hrnetv2_w48'])
    # MCIBI Cityscapes: mcibi_version + the segmentor's downsample_backbone (stride 2)
    ref.relu = _SkipFirstReLU()
    down = tnn.Sequential(tnn.Conv2d(720, 720, 3, stride=2, padding=1, bias=False), tnn.BatchNorm2d(720),
                          tnn.ReLU(inplace=True))

    class Both(tnn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.downsample_backbone = ref, down

        def forward(self, x):
            return [self.downsample_backbone(self.backbone(x)[0])]

    both = Both()
    randomise_bn(down)
    calibrate(both, (2, 3, 128, 256))
    ours = HRNet(arch='hrnetv2_w48', mcibi_version=True, downsample_stride=2)
    sd = {k[len('backbone.'):] if k.startswith('backbone.') else k: v for k, v in both.state_dict().items()}
    to_ours(sd, ours, imagenet_hrnet_to_ours)
    x = np.random.randn(1, 3, 512, 1024).astype('float32')
    r, o = run_both(both, ours, x)
    results['hrnetv2_w48_mcibi_version_downsample2'] = {
        'input': list(x.shape), 'outputs': [list(t.shape) for t in r], 'max_abs_diff': max_diffs(r, o),
        'max_abs_ref': [float(t.abs().max()) for t in r]}
    print('hrnet mcibi', results['hrnetv2_w48_mcibi_version_downsample2'])
    return manifest(ref), manifest(down), results


def vit_to_timm(sd):
    """Inverse of sssegmentation's ``vitconvert`` (ours -> timm names)."""
    out = {}
    for k, v in sd.items():
        if k.startswith('ln1.'):
            k = 'norm.' + k[4:]
        elif k.startswith('patch_embed.projection'):
            k = k.replace('projection', 'proj')
        elif k.startswith('layers.'):
            k = 'blocks.' + k[len('layers.'):]
            for a, b in (('.ln1.', '.norm1.'), ('.ln2.', '.norm2.'), ('ffn.layers.0.0', 'mlp.fc1'),
                         ('ffn.layers.1', 'mlp.fc2'), ('attn.attn.in_proj_', 'attn.qkv.'),
                         ('attn.attn.out_proj', 'attn.proj')):
                k = k.replace(a, b)
        out[k] = v
    return out


def vit():
    kw = dict(img_size=(512, 512), patch_size=16, embed_dims=1024, num_layers=24, num_heads=16, mlp_ratio=4,
              out_indices=(9, 14, 19, 23), qkv_bias=True, drop_rate=0., attn_drop_rate=0., drop_path_rate=0.,
              with_cls_token=True, output_cls_token=False, patch_norm=False, final_norm=False, num_fcs=2,
              norm_cfg={'type': 'LayerNorm', 'eps': 1e-6})
    # a different structure_type skips 1.7.0's AUTO_ASSERT (drop_rate 0.1 there, 0 in MCIBI's configs)
    src = RefViT(structure_type='vit_large_manifest', pretrained=False, **kw)
    names = manifest(src)
    # a timm-format ImageNet checkpoint at 384 (24x24 grid + class token) with a final norm and head
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    sd['pos_embed'] = torch.randn(1, 24 * 24 + 1, 1024) * 0.5
    sd['cls_token'] = torch.randn(1, 1, 1024) * 0.5
    for k in sd:
        if k.endswith('bias') or '.ln' in k:
            sd[k] = sd[k] + torch.randn_like(sd[k]) * 0.1
    timm = vit_to_timm(sd)
    timm['norm.weight'], timm['norm.bias'] = torch.ones(1024), torch.zeros(1024)
    timm['head.weight'], timm['head.bias'] = torch.randn(1000, 1024), torch.zeros(1000)
    back = RefViT.vitconvert(timm)
    assert set(back) == set(sd) | {'ln1.weight', 'ln1.bias'}, set(back) ^ set(sd)
    timm_names = {k: list(v.shape) for k, v in timm.items()}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'jx_vit_large_p16_384.pth')
        torch.save(timm, path)
        ref = RefViT(structure_type='vit_large_manifest', pretrained=True, pretrained_model_path=path, **kw)
        ref.eval()
        ours = VisionTransformer(img_size=(512, 512), out_indices=(9, 14, 19, 23), out_norm=True, pretrained=path)
    ours.eval()
    # the MCIBI segmentor's per-output LayerNorms (head norm_cfg), random affine
    norms = tnn.ModuleList([tnn.LayerNorm(1024, eps=1e-6) for _ in range(4)])
    with torch.no_grad():
        for n in norms:
            n.weight.uniform_(0.5, 1.5)
            n.bias.uniform_(-0.2, 0.2)
    for i, n in enumerate(norms):
        ours.norm_layers[i].weight.set_value(n.weight.detach().numpy())
        ours.norm_layers[i].bias.set_value(n.bias.detach().numpy())

    def ref_fwd(x):
        return [RefMCIBI.norm(None, y, n) for y, n in zip(ref(x), norms)]

    results = {}
    for shape in ((1, 3, 512, 512), (1, 3, 500, 520)):
        x = np.random.randn(*shape).astype('float32')
        with torch.no_grad():
            r = ref_fwd(torch.from_numpy(x))
        with paddle.no_grad():
            o = ours(paddle.to_tensor(x))
        results['x'.join(map(str, shape))] = {
            'outputs': [list(t.shape) for t in r], 'max_abs_diff': max_diffs(r, o),
            'max_abs_ref': [float(t.abs().max()) for t in r]}
        print('vit', shape, results['x'.join(map(str, shape))])
    return names, timm_names, results


NARROW_VIT = dict(img_size=(128, 128), patch_size=16, embed_dims=64, num_layers=6, num_heads=4, mlp_ratio=4,
                  out_indices=(2, 3, 4, 5), qkv_bias=True, drop_rate=0., attn_drop_rate=0., drop_path_rate=0.,
                  with_cls_token=True, output_cls_token=False, patch_norm=False, final_norm=False, num_fcs=2,
                  norm_cfg={'type': 'LayerNorm', 'eps': 1e-6})


class _NormedViT(tnn.Module):
    """The ViT and the MCIBI segmentor's per-output LayerNorms (``norm_layers``), as MCIBI reads it."""

    def __init__(self):
        super().__init__()
        self.backbone = RefViT(structure_type='vit_narrow_outputs', pretrained=False, **NARROW_VIT)
        self.norm_layers = tnn.ModuleList([tnn.LayerNorm(64, eps=1e-6) for _ in range(4)])

    def forward(self, x):
        return [RefMCIBI.norm(None, y, n) for y, n in zip(self.backbone(x), self.norm_layers)]


def stored_outputs():
    from seeded import fill_torch_model, save_outputs, seeded_input
    meta = {'reference': 'sssegmentation 1.7.0 backbones resnest / hrnet / vit', 'torch': torch.__version__,
            'weights': {}, 'vit': {k: v for k, v in NARROW_VIT.items() if k != 'norm_cfg'}}
    inputs, outputs = {}, {}

    def run(key, model, shape, seed=1):
        meta['weights'][key] = fill_torch_model(model)
        model.eval()
        inputs[key] = seeded_input(shape, seed)
        with torch.no_grad():
            for i, y in enumerate(model(torch.from_numpy(inputs[key]))):
                outputs[f'{key}/{i}'] = y.numpy()

    run('resnest101', RefResNeSt(structure_type='resnest101', depth=101, outstride=8, norm_cfg=BN, pretrained=False),
        (1, 3, 64, 64))
    ref = RefHRNet(structure_type='hrnetv2_w48', arch='hrnetv2_w48', norm_cfg=BN, pretrained=False)
    run('hrnetv2_w48', ref, (1, 3, 64, 64))
    ref.relu = _SkipFirstReLU()   # mcibi_version (see hrnet())

    class Both(tnn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = ref
            self.downsample_backbone = tnn.Sequential(tnn.Conv2d(720, 720, 3, stride=2, padding=1, bias=False),
                                                      tnn.BatchNorm2d(720), tnn.ReLU(inplace=True))

        def forward(self, x):
            return [self.downsample_backbone(self.backbone(x)[0])]

    run('hrnetv2_w48_mcibi_version_downsample2', Both(), (1, 3, 64, 128))
    vit = _NormedViT()
    run('vit', vit, (1, 3, 128, 128))
    inputs['vit_odd_size'] = seeded_input((1, 3, 100, 140), seed=2)
    with torch.no_grad():
        for i, y in enumerate(vit(torch.from_numpy(inputs['vit_odd_size']))):
            outputs[f'vit_odd_size/{i}'] = y.numpy()
    path = OUT.replace('.json', '.npz')
    save_outputs(path, inputs, outputs, meta, samples=1024)   # 14 outputs: 1024 values each
    print('wrote', path, {k: v.shape for k, v in outputs.items()})


def main():
    """``python ... [resnest] [hrnet] [vit]``: rerun only those parts, keeping the rest of the JSON."""
    if '--outputs' in sys.argv:
        return stored_outputs()
    _zoo()
    parts = sys.argv[1:] or ['resnest', 'hrnet', 'vit']
    old = json.load(open(OUT)) if os.path.exists(OUT) else {'models': {}, 'parity': {}}
    models, parity = old['models'], old['parity']
    if 'resnest' in parts:
        models['ResNeSt-101-D8'], parity['ResNeSt-101-D8'] = resnest()
    if 'hrnet' in parts:
        models['HRNetV2-W48'], models['MCIBI.downsample_backbone(720)'], parity['HRNetV2-W48'] = hrnet()
    if 'vit' in parts:
        models['ViT-L/16-512'], old['timm_vit_large_patch16_384'], parity['ViT-L/16 (timm 384 checkpoint)'] = vit()
    doc = {
        'source': 'sssegmentation 1.7.0 (pip, --no-deps) ssseg/modules/models/backbones/{resnest,hrnet,vit}.py; '
                  'HRNet mcibi_version from the repository HEAD (emulated, see script)',
        'produced_by': 'tests/manifests/mcibi_backbones_sssegmentation.py',
        'date': datetime.date.today().isoformat(),
        'torch': torch.__version__, 'paddle': paddle.__version__, 'ssseg': getattr(ssseg, '__version__', '1.7.0'),
        'models': models,
        'timm_vit_large_patch16_384': old.get('timm_vit_large_patch16_384'),
        'parity': parity,
    }
    with open(OUT, 'w') as f:
        json.dump(doc, f, indent=1)
    print('wrote', OUT)


if __name__ == '__main__':
    main()
