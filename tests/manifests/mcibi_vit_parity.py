"""Whole-model parity of MCIBI with ViT-L/16 (the ADE20K row) against sssegmentation 1.7.0.

Run in the scratch reference environment (torch 2.13 CPU + sssegmentation 1.7.0 installed
``--no-deps`` + paddlepaddle 3.2.2), from the folder that should receive the exchange file:

    /tmp/refenv/bin/python tests/manifests/mcibi_vit_parity.py [--no-float64]

It builds sssegmentation's own ``MCIBI`` from ``ssseg/configs/mcibi/mcibi_deeplabv3_vitlarge_ade20k.py``
(150 classes, ViT-L/16 layers 9/14/19/23, head LayerNorms, ASPP [1, 6, 12, 18], three auxiliary
decoders with 2 convs and x4 upsampling; SyncBN -> BN so one process can calibrate it,
``pretrained: False``), gives it random weights (LayerNorm/BN affine, biases, position
embeddings, class token) and a random memory, calibrates the BN statistics with a train-mode
pass on a batch of 2 (PLATFORM.md), converts its state dict with our strict
``zoo.models.convert.convert`` and compares in eval mode on one 1x3x512x512 image:

* the final logits (the reference's ``seg_logits`` resized bilinearly to the input, as ours);
* our head (``MCIBI.decode``) on the reference backbone's normed features;
* each auxiliary decoder on the reference's normed layer 9/14/19 features;
* the whole network again with both models in float64 (unless ``--no-float64``).

Writes ``mcibi_vit_parity.json`` in the working folder: the figures and the reference state
dict's names and shapes (``tests/manifests/mcibi_vit_sssegmentation.py`` turns it into the
test manifest).

``--outputs`` (torch and sssegmentation only, no Paddle) writes ``mcibi_vit_sssegmentation.npz``
next to the manifest: the same MCIBI with a narrow ViT (width 64, 6 layers, 4 heads, outputs of
layers 2-5: ViT-L's code with less arithmetic, the head 32 wide) at ``img_size`` 128, seeded
float64 weights and memory (``seeded.py``), a seeded 1x3x128x128 input, its stage-1 / stage-2
logits and the three auxiliary decoders' outputs; ``tests/test_mcibi.py`` compares ours with them:

    /work/scratch/envs/ssseg/bin/python tests/manifests/mcibi_vit_parity.py --outputs
"""
import copy
import datetime
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from ssseg_env import stub_torchvision  # noqa: E402

stub_torchvision()

import torch  # noqa: E402
import torch.nn as tnn  # noqa: E402
import torch.nn.functional as TF  # noqa: E402
import ssseg  # noqa: E402
from ssseg.modules.models.segmentors.mcibi.mcibi import MCIBI as RefMCIBI  # noqa: E402
from ssseg.modules.utils import SSSegInputStructure  # noqa: E402


def _zoo():
    """Paddle and our code, for the parity part (the reference environment needs paddle then)."""
    global paddle, VisionTransformer, convert, MCIBI
    import paddle
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    from zoo.models.backbones.vit import VisionTransformer
    from zoo.models.convert import convert
    from zoo.models.mcibi import MCIBI

NUM_CLASSES = 150
OUT = 'mcibi_vit_parity.json'
AUX = {'in_channels': 1024, 'out_channels': 512, 'dropout': 0.1, 'num_convs': 2, 'upsample': {'scale_factor': 4}}


def ref_cfg():
    """``mcibi_deeplabv3_vitlarge_ade20k.py`` over ``_base_/segmentors/mcibi.py``
    (``mcibi_sssegmentation.ref_cfg``). The structure_type is renamed so 1.7.0's AUTO_ASSERT
    (drop_rate 0.1 there, 0 in the config and on the repository's HEAD) does not reject the
    config; eval mode ignores dropout anyway."""
    from mcibi_sssegmentation import ref_cfg as resnet_cfg
    cfg = resnet_cfg(50)
    cfg['num_classes'] = NUM_CLASSES
    cfg['backbone'] = {
        'type': 'VisionTransformer', 'structure_type': 'jx_vit_large_p16_384_parity', 'img_size': (512, 512),
        'out_indices': (9, 14, 19, 23), 'norm_cfg': {'type': 'LayerNorm', 'eps': 1e-6}, 'pretrained': False,
        'selected_indices': (0, 1, 2, 3), 'patch_size': 16, 'embed_dims': 1024, 'num_layers': 24,
        'num_heads': 16, 'mlp_ratio': 4, 'qkv_bias': True, 'drop_rate': 0., 'attn_drop_rate': 0.,
        'drop_path_rate': 0., 'with_cls_token': True, 'output_cls_token': False, 'patch_norm': False,
        'final_norm': False, 'num_fcs': 2,
    }
    cfg['head']['context_within_image']['cfg']['dilations'] = [1, 6, 12, 18]
    cfg['head']['in_channels'] = 1024
    cfg['head']['norm_cfg'] = {'in_channels_list': [1024, 1024, 1024, 1024], 'type': 'LayerNorm', 'eps': 1e-6}
    cfg['auxiliary'] = [dict(AUX), dict(AUX), dict(AUX)]
    return cfg


def ours():
    """Our model as ``configs/mcibi/mcibi_vit-large_ade20k_512x512_130e.yml`` builds it."""
    bb = VisionTransformer(img_size=(512, 512), out_indices=(9, 14, 19, 23), out_norm=True)
    return MCIBI(num_classes=NUM_CLASSES, backbone=bb, in_channels=1024, aspp_dilations=(1, 6, 12, 18),
                 aux_in_channels=[1024, 1024, 1024], aux_channels=512, aux_num_convs=2, aux_upsample=4,
                 use_memory_loss=True)


def randomise(ref):
    """Non-trivial values where torch's init leaves constants: LayerNorm / BN affine, ViT
    biases, position embeddings and class token; the memory N(0, 2)."""
    with torch.no_grad():
        for name, m in ref.named_modules():
            if isinstance(m, (tnn.LayerNorm, tnn.BatchNorm2d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        for name, p in ref.backbone_net.named_parameters():
            if name.endswith('bias'):
                p.add_(torch.randn_like(p) * 0.1)
        ref.backbone_net.pos_embed.normal_(0, 0.5)
        ref.backbone_net.cls_token.normal_(0, 0.5)
        ref.memory_module.memory.copy_(torch.randn_like(ref.memory_module.memory) * 2.0)


def normed_features(ref, x):
    """The reference's backbone outputs after its ``norm_layers`` (what head and aux read)."""
    feats = ref.transforminputs(ref.backbone_net(x), selected_indices=(0, 1, 2, 3))
    return [ref.norm(f, n) for f, n in zip(feats, ref.norm_layers)]


def calibrate(ref, x):
    """Cumulative BN statistics from one train-mode pass on a batch of 2 through the head and
    the auxiliary decoders (the image-pool BN needs more than one value per channel)."""
    ref.eval()
    bns = [m for m in ref.modules() if isinstance(m, tnn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    with torch.no_grad():
        xb = torch.cat([x, 0.9 * x + 0.1])
        ref(SSSegInputStructure(images=xb, mode='TEST'))
        feats = normed_features(ref, xb)
        for dec, f in zip(ref.auxiliary_decoder, feats[:3]):
            dec(f)
    ref.eval()


def up(t, size):
    return TF.interpolate(t, size=size, mode='bilinear', align_corners=False)


NARROW = {'embed_dims': 64, 'num_layers': 6, 'num_heads': 4, 'out_indices': (2, 3, 4, 5), 'img_size': (128, 128),
          'feats_channels': 32, 'transform_channels': 16, 'out_channels': 32, 'aux_channels': 32}


def narrow_cfg():
    """:func:`ref_cfg` with the ViT and the head narrowed (``NARROW``); the structure is the config's."""
    cfg = ref_cfg()
    n = NARROW
    cfg['backbone'].update(embed_dims=n['embed_dims'], num_layers=n['num_layers'], num_heads=n['num_heads'],
                           out_indices=n['out_indices'], img_size=n['img_size'])
    cfg['head'].update(in_channels=n['embed_dims'], feats_channels=n['feats_channels'],
                       transform_channels=n['transform_channels'], out_channels=n['out_channels'])
    cfg['head']['norm_cfg']['in_channels_list'] = [n['embed_dims']] * 4
    cfg['auxiliary'] = [dict(AUX, in_channels=n['embed_dims'], out_channels=n['aux_channels']) for _ in range(3)]
    return cfg


def stored_outputs():
    from seeded import fill_torch_model, save_outputs, seeded_input
    ref = RefMCIBI(copy.deepcopy(narrow_cfg()), mode='TEST')
    meta = {'reference': 'sssegmentation 1.7.0 mcibi_deeplabv3_vitlarge_ade20k.py, narrowed', 'torch': torch.__version__,
            'num_classes': NUM_CLASSES, 'narrow': NARROW, 'aux': AUX, 'weights': {'model': fill_torch_model(ref)}}
    ref.eval()
    inputs = {'image': seeded_input((1, 3, 128, 128), seed=1)}
    with torch.no_grad():
        x = torch.from_numpy(inputs['image'])
        feats = normed_features(ref, x)
        memory_input = ref.bottleneck(feats[-1])
        stage1 = ref.decoder_stage1(memory_input)
        _, memory_output = ref.memory_module(memory_input, stage1, ref.context_within_image_module(feats[-1]))
        outputs = {'stage2': up(ref.decoder_stage2(memory_output), x.shape[2:]).numpy(),
                   'stage1': up(stage1, x.shape[2:]).numpy()}
        outputs.update({f'aux{i + 1}': dec(f).numpy() for i, (dec, f) in enumerate(zip(ref.auxiliary_decoder, feats[:3]))})
    path = os.path.join(HERE, 'mcibi_vit_sssegmentation.npz')
    save_outputs(path, inputs, outputs, meta)
    print('wrote', path, {k: v.shape for k, v in outputs.items()})


def main():
    if '--outputs' in sys.argv[1:]:
        return stored_outputs()
    _zoo()
    with_float64 = '--no-float64' not in sys.argv[1:]
    paddle.set_device('cpu')
    torch.manual_seed(0)
    np.random.seed(0)
    t0 = time.time()
    ref = RefMCIBI(copy.deepcopy(ref_cfg()), mode='TEST')
    randomise(ref)
    x = torch.randn(1, 3, 512, 512)
    calibrate(ref, x)
    sd = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    names = {k: list(v.shape) for k, v in ref.state_dict().items()}
    res = {'input': [1, 3, 512, 512], 'num_classes': NUM_CLASSES}
    with torch.no_grad():
        want = up(ref(SSSegInputStructure(images=x, mode='TEST')).seg_logits, (512, 512)).numpy()
        feats = normed_features(ref, x)
        want_aux = [dec(f).numpy() for dec, f in zip(ref.auxiliary_decoder, feats[:3])]
    print(f'reference done ({time.time() - t0:.0f} s)', flush=True)
    model = ours()
    converted = convert(model, 'sssegmentation', sd)       # strict: every tensor once, shapes equal
    res['tensors'] = len(converted)
    model.set_state_dict(converted)
    model.eval()
    with paddle.no_grad():
        got = model(paddle.to_tensor(x.numpy()))[0].numpy()
        got_head = model.decode(paddle.to_tensor(feats[-1].numpy()))[0]
        got_head = paddle.nn.functional.interpolate(got_head, size=[512, 512], mode='bilinear').numpy()
        got_aux = [dec(paddle.to_tensor(f.numpy())).numpy() for dec, f in zip(model.auxiliary_decoder, feats[:3])]
        our_feats = [f.numpy() for f in model.backbone(paddle.to_tensor(x.numpy()))]
    res.update(
        logit_absmax=float(np.abs(want).max()),
        max_abs_diff=float(np.abs(want - got).max()),
        argmax_agreement=float((want.argmax(1) == got.argmax(1)).mean()),
        head_on_reference_features_max_abs_diff=float(np.abs(want - got_head).max()),
        backbone_normed_features_max_abs_diff=[float(np.abs(a.numpy() - b).max()) for a, b in zip(feats, our_feats)],
        aux_outputs=[list(a.shape) for a in want_aux],
        aux_on_reference_features_max_abs_diff=[float(np.abs(a - b).max()) for a, b in zip(want_aux, got_aux)],
        aux_absmax=[float(np.abs(a).max()) for a in want_aux])
    print(res, f'({time.time() - t0:.0f} s)', flush=True)
    del model, converted
    if with_float64:
        ref64 = ref.double()
        with torch.no_grad():
            want64 = up(ref64(SSSegInputStructure(images=x.double(), mode='TEST')).seg_logits, (512, 512)).numpy()
        paddle.set_default_dtype('float64')
        try:
            model64 = ours()
            model64.set_state_dict(convert(model64, 'sssegmentation', {
                k: v.astype('float64') if v.dtype.kind == 'f' else v for k, v in sd.items()}))
            model64.eval()
            with paddle.no_grad():
                got64 = model64(paddle.to_tensor(x.double().numpy()))[0].numpy()
        finally:
            paddle.set_default_dtype('float32')
        res['float64_max_abs_diff'] = float(np.abs(want64 - got64).max())
        print('float64', res['float64_max_abs_diff'], f'({time.time() - t0:.0f} s)', flush=True)
    doc = {
        'produced_by': 'tests/manifests/mcibi_vit_parity.py (first run as tools/parity/mcibi_vit_parity.py)',
        'reference': 'sssegmentation ssseg/configs/mcibi/mcibi_deeplabv3_vitlarge_ade20k.py (MCIBI, ViT-L/16)',
        'date': datetime.date.today().isoformat(),
        'versions': {'sssegmentation': getattr(ssseg, '__version__', '1.7.0'), 'torch': torch.__version__,
                     'paddle': paddle.__version__},
        'parity': res,
        'names': names,
    }
    with open(OUT, 'w') as f:
        json.dump(doc, f, indent=1)
    print('wrote', OUT, f'({time.time() - t0:.0f} s)')


if __name__ == '__main__':
    main()
