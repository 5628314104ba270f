"""Write ``dmnet_mmseg.json``: mmsegmentation's DMNet facts + our import parity against it.

Run by hand in the reference environment (torch + mmsegmentation 1.2.2 + paddle), not by
``make test`` (which reads the JSON):

    PYTHONPATH=/work/main /tmp/refenv/bin/python tests/manifests/dmnet_mmseg.py

It records
* ``models``: the state-dict names and shapes of mmseg's R-50-D8 and R-101-D8 DMNet
  (Cityscapes, 19 classes; the ADE20K configs differ only in the classifiers' outputs);
* ``configs``: for each of mmseg's twelve ``configs/dmnet`` files, the facts our YAML must
  reproduce (depth, classes, crop, align_corners, test mode, iterations, batch, optimizer);
* ``parity``: max |difference| between mmseg's own code (random weights) and ours after
  :func:`zoo.models.convert.convert` from the same state dict:
  DMHead alone on random stride-8 features of a 1x3x512x1024 image (batch 1 and 2),
  DCMs with even filter sizes (mmseg pads those asymmetrically), and the whole R-50-D8
  DMNet on a 1x3x512x1024 image (BN statistics calibrated first, see PLATFORM.md).

With ``--outputs`` (torch and mmseg only, no Paddle) it writes ``dmnet_mmseg.npz`` instead: the
R-50-D8 DMNet and a DMHead with even filter sizes with seeded float64 weights (``seeded.py``),
their seeded inputs (batch 2: the filters are generated per sample) and outputs, which
``tests/test_dmnet.py`` compares with ours on every run:

    /work/scratch/envs/mmseg/bin/python tests/manifests/dmnet_mmseg.py --outputs
"""
import datetime
import json
import os
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'dmnet_mmseg.json')


def _stub_mmcv_ext():
    # mmseg's registry imports mmcv._ext (compiled ops) which mmcv-lite lacks; DMNet and
    # ResNet use none of them.
    def _missing(name):
        if name.startswith('__'):
            raise AttributeError(name)

        def f(*a, **k):
            raise RuntimeError(f'mmcv._ext.{name} is a stub')
        return f

    mod = types.ModuleType('mmcv._ext')
    mod.__getattr__ = _missing
    sys.modules['mmcv._ext'] = mod


_stub_mmcv_ext()

import torch  # noqa: E402
import torch.nn.functional as TF  # noqa: E402
import mmseg  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmseg.registry import MODELS  # noqa: E402
from mmseg.utils import register_all_modules  # noqa: E402

register_all_modules()
CFG_DIR = os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'configs', 'dmnet')


def _bn(cfg):
    """SyncBN -> BN everywhere (single CPU process)."""
    if isinstance(cfg, dict):
        return {k: ({'type': 'BN', 'requires_grad': True} if k == 'norm_cfg' else _bn(v)) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [_bn(v) for v in cfg]
    return cfg


def build_mmseg(cfg_name):
    cfg = Config.fromfile(os.path.join(CFG_DIR, cfg_name))
    m = cfg.model.to_dict()
    m.pop('data_preprocessor', None)
    m['pretrained'] = None
    return MODELS.build(_bn(m)).eval(), cfg


def to_numpy(sd):
    return {k: v.detach().cpu().numpy() for k, v in sd.items()}


def config_facts(name, cfg):
    m = cfg.model
    test = m.test_cfg
    sched = [s for s in cfg.param_scheduler if s['type'] == 'PolyLR'][0]
    crop = [p for p in cfg.train_pipeline if p['type'] == 'RandomCrop'][0]
    resize = [p for p in cfg.train_pipeline if p['type'] == 'RandomResize'][0]
    return {
        'mmseg_config': name,
        'depth': m.backbone.depth,
        'pretrained': m.pretrained,
        'num_classes': m.decode_head.num_classes,
        'aux_num_classes': m.auxiliary_head.num_classes,
        'aux_loss_weight': m.auxiliary_head.loss_decode.loss_weight,
        'align_corners': m.decode_head.align_corners,
        'crop_size_hw': list(crop['crop_size']),
        'cat_max_ratio': crop['cat_max_ratio'],
        'scale_wh': list(resize['scale']),
        'ratio_range': list(resize['ratio_range']),
        'test_mode': test.mode,
        'test_crop_size_hw': list(test.get('crop_size', [])),
        'test_stride_hw': list(test.get('stride', [])),
        'iters': cfg.train_cfg.max_iters,
        'batch_per_gpu': cfg.train_dataloader.batch_size,
        'reduce_zero_label': bool(cfg.train_dataloader.dataset.get('reduce_zero_label', False)),
        'lr': cfg.optimizer.lr, 'momentum': cfg.optimizer.momentum,
        'weight_decay': cfg.optimizer.weight_decay,
        'poly_power': sched['power'], 'poly_eta_min': sched['eta_min'],
    }


def randomize_bn(module, seed):
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.bias.data = torch.randn(n, generator=g) * 0.1
            m.running_mean = torch.randn(n, generator=g) * 0.1
            m.running_var = torch.rand(n, generator=g) + 0.5


def calibrate_bn(model, inputs):
    """Cumulative-average BN statistics from a few train-mode passes (deep random nets
    otherwise explode in eval mode)."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for x in inputs:
            model.decode_head(model.extract_feat(x))
    model.eval()


def max_diff(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max())


def _zoo():
    """Paddle and our code, for the parity part (the reference environment needs paddle then)."""
    global paddle, ResNetV1c, convert, DMHead, DMNet
    import paddle
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    from zoo.models.backbones.resnet import ResNetV1c
    from zoo.models.convert import convert
    from zoo.models.dmnet import DMNet
    from zoo.models.heads.dm_head import DMHead
    paddle.set_device('cpu')


def _mmseg_dmhead(filter_sizes, in_channels, channels):
    return MODELS.build(dict(type='DMHead', in_channels=in_channels, in_index=3, channels=channels,
                             filter_sizes=filter_sizes, dropout_ratio=0.1, num_classes=19,
                             norm_cfg=dict(type='BN', requires_grad=True), align_corners=False))


def head_parity(filter_sizes, in_channels, channels, shape, seed):
    from zoo.models.convert import check_mapping, torch_key
    torch.manual_seed(seed)
    ref = _mmseg_dmhead(filter_sizes, in_channels, channels)
    randomize_bn(ref, seed)
    ref.eval()
    ours = DMHead(in_channels, channels, 19, filter_sizes=filter_sizes, in_index=3)
    converted = {torch_key(k): v for k, v in to_numpy(ref.state_dict()).items() if torch_key(k)}
    check_mapping(converted, ours)   # the head's names are mmseg's up to BN statistics
    ours.set_state_dict(converted)
    ours.eval()
    rng = np.random.default_rng(seed)
    feats = [rng.standard_normal((shape[0], in_channels, shape[1], shape[2])).astype('float32') for _ in range(4)]
    with torch.no_grad():
        r = ref([torch.from_numpy(f) for f in feats]).numpy()
    with paddle.no_grad():
        o = ours([paddle.to_tensor(f) for f in feats]).numpy()
    return max_diff(r, o), float(np.abs(r).max())


def model_parity(cfg_name, depth, hw, seed=0):
    torch.manual_seed(seed)
    ref, _ = build_mmseg(cfg_name)
    g = torch.Generator().manual_seed(seed)
    calibrate_bn(ref, [torch.randn(1, 3, hw[0] // 2, hw[1] // 2, generator=g) for _ in range(2)])
    sd = to_numpy(ref.state_dict())
    ours = DMNet(num_classes=19, backbone=ResNetV1c(depth=depth, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4),
                                                     contract_dilation=True))
    ours.set_state_dict(convert(ours, 'mmseg', sd))
    ours.eval()
    x = np.random.default_rng(seed).standard_normal((1, 3) + tuple(hw)).astype('float32')
    with torch.no_grad():
        xt = torch.from_numpy(x)
        r_feats = ref.extract_feat(xt)
        r = ref.decode_head(r_feats)
        r = TF.interpolate(r, size=xt.shape[2:], mode='bilinear', align_corners=False).numpy()
    with paddle.no_grad():
        xp = paddle.to_tensor(x)
        o_feats = ours.backbone(xp)
        o = ours(xp)[0].numpy()
        # our head on mmseg's backbone features: separates the head from the backbone's drift
        o_on_ref = ours.decode_head(paddle.to_tensor(r_feats[3].numpy()))
        o_on_ref = paddle.nn.functional.interpolate(o_on_ref, size=list(hw), mode='bilinear',
                                                    align_corners=False).numpy()
    return {'max_abs_diff': max_diff(r, o), 'max_abs_ref': float(np.abs(r).max()),
            'argmax_agreement': float((r.argmax(1) == o.argmax(1)).mean()),
            'backbone_stage4_max_abs_diff': max_diff(r_feats[3].numpy(), o_feats[3].numpy()),
            'backbone_stage4_max_abs_ref': float(np.abs(r_feats[3].numpy()).max()),
            'head_on_mmseg_features_max_abs_diff': max_diff(r, o_on_ref)}


def stored_outputs():
    """mmseg's R-50-D8 DMNet (Cityscapes config) on a seeded 2x3x64x64 input: decode and auxiliary
    logits resized to the input; its DMHead with even filters (2, 4, 6) on 2x64x13x17 features."""
    from seeded import fill_torch_model, save_outputs, seeded_input
    cfg_name = 'dmnet_r50-d8_4xb2-40k_cityscapes-512x1024.py'
    ref, _ = build_mmseg(cfg_name)
    meta = {'reference': f'mmsegmentation {mmseg.__version__}, configs/dmnet/{cfg_name}', 'torch': torch.__version__,
            'num_classes': 19, 'weights': {'model': fill_torch_model(ref)}}
    ref.eval()
    inputs = {'image': seeded_input((2, 3, 64, 64), seed=1), 'head/even_filters': seeded_input((2, 64, 13, 17), 2)}
    head = _mmseg_dmhead((2, 4, 6), 64, 32)
    meta['weights']['head/even_filters'] = fill_torch_model(head, seed=1)
    head.eval()
    with torch.no_grad():
        x = torch.from_numpy(inputs['image'])
        feats = ref.extract_feat(x)
        outputs = {name: TF.interpolate(h(feats), size=x.shape[2:], mode='bilinear', align_corners=False).numpy()
                   for name, h in (('decode_head', ref.decode_head), ('auxiliary_head', ref.auxiliary_head))}
        f = torch.from_numpy(inputs['head/even_filters'])
        outputs['head/even_filters'] = head([f, f, f, f]).numpy()
    path = OUT.replace('.json', '.npz')
    save_outputs(path, inputs, outputs, meta)
    print('wrote', path, {k: v.shape for k, v in outputs.items()})


def main():
    _zoo()
    out = {'generated_by': 'tests/manifests/dmnet_mmseg.py',
           'date': datetime.date.today().isoformat(),
           'versions': {'mmsegmentation': mmseg.__version__, 'torch': torch.__version__,
                        'paddle': paddle.__version__},
           'models': {}, 'configs': {}, 'parity': {}}
    names = sorted(f for f in os.listdir(CFG_DIR) if f.endswith('.py'))
    for name in names:
        cfg = Config.fromfile(os.path.join(CFG_DIR, name))
        out['configs'][name[:-3]] = config_facts(name, cfg)
    for depth in (50, 101):
        ref, _ = build_mmseg(f'dmnet_r{depth}-d8_4xb2-40k_cityscapes-512x1024.py')
        out['models'][f'r{depth}'] = [[k, list(v.shape)] for k, v in ref.state_dict().items()]
        del ref

    p = out['parity']
    d, scale = head_parity((1, 3, 5, 7), 2048, 512, (1, 64, 128), seed=1)
    p['dmhead_1x2048x64x128'] = {'max_abs_diff': d, 'max_abs_ref': scale}
    d, scale = head_parity((1, 3, 5, 7), 2048, 512, (2, 24, 40), seed=2)
    p['dmhead_2x2048x24x40'] = {'max_abs_diff': d, 'max_abs_ref': scale}
    d, scale = head_parity((2, 4, 6), 64, 32, (2, 13, 17), seed=3)
    p['dmhead_even_filters_2x64x13x17'] = {'max_abs_diff': d, 'max_abs_ref': scale}
    p['dmnet_r50_d8_1x3x512x1024'] = model_parity('dmnet_r50-d8_4xb2-40k_cityscapes-512x1024.py', 50, (512, 1024))
    for k, v in p.items():
        print(k, v)
    with open(OUT, 'w') as f:
        json.dump(out, f, indent=1)
        f.write('\n')
    print('wrote', OUT)


if __name__ == '__main__':
    stored_outputs() if '--outputs' in sys.argv else main()
