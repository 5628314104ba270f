"""Write ``mcibi_sssegmentation.json``: sssegmentation's MCIBI facts + our import parity.

Run by hand in the reference environment (torch + sssegmentation 1.7.0 installed --no-deps +
paddle), not by ``make test`` (which reads the JSON):

    PYTHONPATH=/work/main /tmp/refenv/bin/python tests/manifests/mcibi_sssegmentation.py

It records
* ``models``: state-dict names and shapes of sssegmentation's MCIBI (DeepLabV3 + memory)
  with R-50-D8 and R-101-D8 backbones (19 classes; other datasets change only the class
  dimension of the memory and classifiers);
* ``parity``: max |difference| of the eval-mode logits between sssegmentation's own MCIBI code
  and ours after :func:`zoo.models.convert.convert` of its state dict: random weights (BN
  statistics calibrated first, PLATFORM.md), a random memory, 1x3x512x512 input; R-50 and
  R-101 with ReLU and R-50 with LIP's LeakyReLU(0.01); each as the whole network in float32,
  the head alone on the reference backbone's float32 features, and the whole network in
  float64 (random deep nets amplify float32 rounding; float64 shows the mapping itself);
  plus one memory update
  (``FeaturesMemory.update`` vs ours) from random features and labels with some classes
  seen for the first time.
sssegmentation's MCIBI module tree is unchanged from its 2021 ``memorynet`` (which trained the
published checkpoints, release ``ssseg_memorynet`` renamed ``ssseg_mcibi`` in 2023) to 1.7.0.

``--outputs`` (torch and sssegmentation only, no Paddle) writes ``mcibi_sssegmentation.npz``:
the R-50-D8 MCIBI with ReLU (1x3x128x128: the rate-12 ASPP branch reaches real pixels) and with
LIP's LeakyReLU (1x3x64x64), seeded float64 weights and memory (``seeded.py``), their stage-1
and stage-2 logits resized to the input, and one memory update from seeded features and
labels; ``tests/test_mcibi.py`` compares ours with them on every run:

    /work/scratch/envs/ssseg/bin/python tests/manifests/mcibi_sssegmentation.py --outputs
"""
import copy
import datetime
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, 'mcibi_sssegmentation.json')



sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ssseg_env import stub_torchvision  # noqa: E402

stub_torchvision()

import torch  # noqa: E402
import ssseg  # noqa: E402
from ssseg.modules.models.segmentors.mcibi.mcibi import MCIBI as RefMCIBI  # noqa: E402
from ssseg.modules.utils import SSSegInputStructure  # noqa: E402

NUM_CLASSES = 19


def ref_cfg(depth, act='relu'):
    """sssegmentation's ``_base_/segmentors/mcibi.py`` values (BatchNorm2d instead of SyncBN
    so the statistics can be calibrated in one process)."""
    act_cfg = {'type': 'ReLU', 'inplace': True} if act == 'relu' else \
        {'type': 'LeakyReLU', 'negative_slope': 0.01, 'inplace': True}
    return {
        'type': 'MCIBI', 'num_classes': NUM_CLASSES, 'align_corners': False,
        'norm_cfg': {'type': 'BatchNorm2d'}, 'act_cfg': act_cfg,
        'backbone': {'type': 'ResNet', 'depth': depth, 'structure_type': f'resnet{depth}conv3x3stem',
                     'pretrained': False, 'outstride': 8, 'use_conv3x3_stem': True,
                     'selected_indices': (0, 1, 2, 3)},
        'head': {
            'downsample_backbone': {'kernel_size': 3, 'stride': 1, 'padding': 1, 'bias': False},
            'context_within_image': {'is_on': True, 'type': 'aspp', 'cfg': {'dilations': [1, 12, 24, 36]}},
            'use_hard_aggregate': False, 'in_channels': 2048, 'feats_channels': 512, 'transform_channels': 256,
            'out_channels': 512, 'num_feats_per_cls': 1, 'use_loss': True,
            'loss_cfg': {'type': 'CrossEntropyLoss', 'scale_factor': 1.0, 'reduction': 'mean'},
            'update_cfg': {'strategy': 'cosine_similarity', 'ignore_index': -100,
                           'momentum_cfg': {'base_momentum': 0.9, 'base_lr': 0.01, 'adjust_by_learning_rate': True}},
            'dropout': 0.1,
        },
        'auxiliary': {'in_channels': 1024, 'out_channels': 512, 'dropout': 0.1},
        'losses': {},
    }


def _zoo():
    """Paddle and our code, for the parity part (the reference environment needs paddle then)."""
    global paddle, ResNetV1c, convert, MCIBI
    import paddle
    sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
    from zoo.models.backbones.resnet import ResNetV1c
    from zoo.models.convert import convert
    from zoo.models.mcibi import MCIBI
    paddle.set_device('cpu')


def ours(depth, act='relu'):
    bb = ResNetV1c(depth=depth, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), contract_dilation=True)
    return MCIBI(num_classes=NUM_CLASSES, backbone=bb, act='relu' if act == 'relu' else 'leakyrelu:0.01')


def calibrate(model, x):
    """Cumulative BN statistics from train-mode passes on a batch of 2 (the image-pool BN needs
    more than one value per channel); the rest of the model stays in eval mode."""
    model.eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
            m.train()
    with torch.no_grad():
        model(SSSegInputStructure(images=torch.cat([x, 0.9 * x + 0.1]), mode='TEST'))
    model.eval()


def ref_head(ref, top):
    """sssegmentation's MCIBI.forward after the backbone (eval mode)."""
    feats_ms = ref.context_within_image_module(top)
    memory_input = ref.bottleneck(top)
    preds_stage1 = ref.decoder_stage1(memory_input)
    _, memory_output = ref.memory_module(memory_input, preds_stage1, feats_ms)
    return ref.decoder_stage2(memory_output)


def parity(depth, act, seed, with_float64=True):
    """Three comparisons on one random model: the whole network in float32; the head alone on
    the reference backbone's features (float32); the whole network in float64, where float
    rounding no longer hides a wrong mapping (random deep nets amplify float32 noise)."""
    torch.manual_seed(seed)
    ref = RefMCIBI(copy.deepcopy(ref_cfg(depth, act)), mode='TEST')
    with torch.no_grad():
        ref.memory_module.memory.data.copy_(torch.randn_like(ref.memory_module.memory) * 2.0)
    x = torch.randn(1, 3, 512, 512)
    calibrate(ref, x)
    sd = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    res = {'depth': depth, 'act': act, 'input': [1, 3, 512, 512]}

    def up(t):
        return torch.nn.functional.interpolate(t, size=(512, 512), mode='bilinear', align_corners=False).numpy()

    with torch.no_grad():
        feats = ref.backbone_net(x)
        want = up(ref_head(ref, feats[-1]))
        ref_top = feats[-1].numpy()
    model = ours(depth, act)
    model.set_state_dict(convert(model, 'sssegmentation', sd))
    model.eval()
    with paddle.no_grad():
        got = model(paddle.to_tensor(x.numpy()))[0].numpy()
        got_head = model.decode(paddle.to_tensor(ref_top))[0]
        got_head = paddle.nn.functional.interpolate(got_head, size=[512, 512], mode='bilinear').numpy()
    res.update(logit_absmax=float(np.abs(want).max()), max_abs_diff=float(np.abs(want - got).max()),
               argmax_agreement=float((want.argmax(1) == got.argmax(1)).mean()),
               head_on_reference_features_max_abs_diff=float(np.abs(want - got_head).max()))
    print(res, flush=True)
    if with_float64:
        ref64 = ref.double()
        with torch.no_grad():
            want64 = up(ref64(SSSegInputStructure(images=x.double(), mode='TEST')).seg_logits)
        paddle.set_default_dtype('float64')
        try:
            model64 = ours(depth, act)
            model64.set_state_dict(convert(model64, 'sssegmentation', {k: v.astype('float64') if v.dtype.kind == 'f' else v
                                                                       for k, v in sd.items()}))
            model64.eval()
            with paddle.no_grad():
                got64 = model64(paddle.to_tensor(x.double().numpy()))[0].numpy()
        finally:
            paddle.set_default_dtype('float32')
        res['float64_max_abs_diff'] = float(np.abs(want64 - got64).max())
    names = {k: list(v.shape) for k, v in ref.state_dict().items()}
    return names, res


def update_parity(seed=0):
    """One ``FeaturesMemory.update`` (cosine strategy, lr-scaled momentum) vs ours."""
    from ssseg.modules.models.segmentors.mcibi.memory import FeaturesMemory as RefMemory
    from zoo.models.mcibi_memory import FeaturesMemory
    torch.manual_seed(seed)
    K, C = 6, 16
    ref = RefMemory(num_classes=K, feats_channels=C, transform_channels=8, out_channels=C,
                    norm_cfg={'type': 'BatchNorm2d'}, act_cfg={'type': 'ReLU', 'inplace': True})
    mem = torch.randn(K, 1, C)
    mem[1] = 0  # class 1 is seen for the first time
    ref.memory.data.copy_(mem)
    feats = torch.randn(2, C, 8, 8)
    labels = torch.randint(0, K, (2, 32, 32))
    labels[0, :4] = -100
    up = torch.nn.functional.interpolate(feats, size=(32, 32), mode='bilinear', align_corners=False)
    lr = 0.007
    ref.update(up, labels, ignore_index=-100, strategy='cosine_similarity',
               momentum_cfg={'base_momentum': 0.9, 'base_lr': 0.009, 'adjust_by_learning_rate': True},
               learning_rate=lr)
    mine = FeaturesMemory(K, C, 8, C)
    mine.memory.set_value(mem.numpy())
    lab = labels.numpy().copy()
    lab[lab == -100] = 255
    mine.update(paddle.to_tensor(feats.numpy()), paddle.to_tensor(lab), 0.9 / 0.009 * lr, 255)
    diff = float(np.abs(ref.memory.data.numpy() - mine.memory.numpy()).max())
    return {'classes': K, 'channels': C, 'features': [2, C, 8, 8], 'labels': [2, 32, 32], 'lr': lr,
            'base_lr': 0.009, 'max_abs_diff': diff}


def ref_stages(ref, top):
    """[stage-2, stage-1] logits of sssegmentation's MCIBI head (eval mode)."""
    feats_ms = ref.context_within_image_module(top)
    memory_input = ref.bottleneck(top)
    preds_stage1 = ref.decoder_stage1(memory_input)
    _, memory_output = ref.memory_module(memory_input, preds_stage1, feats_ms)
    return ref.decoder_stage2(memory_output), preds_stage1


UPDATE = {'classes': 6, 'channels': 16, 'features': [2, 16, 8, 8], 'labels': [2, 32, 32], 'lr': 0.007,
          'base_lr': 0.009, 'base_momentum': 0.9, 'first_seen': 1}


def update_labels():
    """Seeded labels of the memory update: classes 0..5, the reference's ignore value -100 on
    the first image's top rows."""
    labels = np.random.RandomState(5).randint(0, UPDATE['classes'], UPDATE['labels'])
    labels[0, :4] = -100
    return labels


def stored_outputs():
    from seeded import fill_torch_model, save_outputs, seeded_array, seeded_input
    meta = {'reference': f'sssegmentation {getattr(ssseg, "__version__", "1.7.0")} segmentors/mcibi',
            'torch': torch.__version__, 'num_classes': NUM_CLASSES, 'weights': {}, 'update': UPDATE}
    inputs, outputs = {}, {}
    for act, size in (('relu', 128), ('leakyrelu', 64)):
        ref = RefMCIBI(copy.deepcopy(ref_cfg(50, act)), mode='TEST')
        meta['weights'][act] = fill_torch_model(ref)
        ref.eval()
        inputs[act] = seeded_input((1, 3, size, size), seed=1)
        with torch.no_grad():
            x = torch.from_numpy(inputs[act])
            stage2, stage1 = ref_stages(ref, ref.backbone_net(x)[-1])
            for name, t in (('stage2', stage2), ('stage1', stage1)):
                outputs[f'{act}/{name}'] = torch.nn.functional.interpolate(
                    t, size=x.shape[2:], mode='bilinear', align_corners=False).numpy()
    # one memory update: seeded memory (class 1 empty: first sight), features and labels
    from ssseg.modules.models.segmentors.mcibi.memory import FeaturesMemory as RefMemory
    K, C = UPDATE['classes'], UPDATE['channels']
    mem = RefMemory(num_classes=K, feats_channels=C, transform_channels=8, out_channels=C,
                    norm_cfg={'type': 'BatchNorm2d'}, act_cfg={'type': 'ReLU', 'inplace': True}).double()
    memory = seeded_array('update/memory', (K, 1, C))
    memory[UPDATE['first_seen']] = 0
    mem.memory.data.copy_(torch.from_numpy(memory))
    inputs['update/features'] = seeded_input(UPDATE['features'], seed=3)
    feats = torch.nn.functional.interpolate(torch.from_numpy(inputs['update/features']), size=UPDATE['labels'][1:],
                                            mode='bilinear', align_corners=False)
    mem.update(feats, torch.from_numpy(update_labels()), ignore_index=-100, strategy='cosine_similarity',
               momentum_cfg={'base_momentum': UPDATE['base_momentum'], 'base_lr': UPDATE['base_lr'],
                             'adjust_by_learning_rate': True}, learning_rate=UPDATE['lr'])
    outputs['update/memory'] = mem.memory.data.numpy()
    path = OUT.replace('.json', '.npz')
    save_outputs(path, inputs, outputs, meta)
    print('wrote', path, {k: v.shape for k, v in outputs.items()})


def main():
    _zoo()
    out = {
        'generated_by': 'tests/manifests/mcibi_sssegmentation.py',
        'date': datetime.date.today().isoformat(),
        'versions': {'sssegmentation': getattr(ssseg, '__version__', '1.7.0'), 'torch': torch.__version__,
                     'paddle': paddle.__version__},
        'num_classes': NUM_CLASSES,
        'models': {},
        'parity': [],
    }
    out['update_parity'] = update_parity()
    print(out['update_parity'], flush=True)

    def write():
        with open(OUT, 'w') as f:
            json.dump(out, f, indent=1)

    # written after every run (each takes minutes on 2 cores)
    for depth, act in ((50, 'relu'), (50, 'leakyrelu'), (101, 'relu')):
        names, res = parity(depth, act, seed=depth, with_float64=(depth, act) == (50, 'relu'))
        if act == 'relu':
            out['models'][f'R-{depth}-D8'] = names
        out['parity'].append(res)
        print(res, flush=True)
        write()
    print('wrote', OUT)


if __name__ == '__main__':
    stored_outputs() if '--outputs' in sys.argv else main()
