"""ResNet backbones: strides/dilations per family, shortcut layout, pretrained loading."""
import tarfile

import numpy as np
import paddle
import paddle.nn as nn
import pytest

from zoo.models.backbones.resnet import ResNet, ResNet18_vd, ResNet50_vd, ResNetV1c, paddleseg_resnet_vd_key
from zoo.models.convert import convert, detect_source, load_weights
from zoo.utils.errors import CheckpointError, ConfigError
from zoo.utils.registry import BACKBONES


def tiny_vd(**kw):
    """ResNet-18 vd layout at 1/8 width: same tree and strides, fast to build and save."""
    return ResNet(depth=18, deep_stem=True, avg_down=True, stem_channels=16, base_channels=8, **kw)


def _dil(conv):
    return list(conv._dilation)


def _stride(conv):
    return list(conv._stride)


def test_variants_are_registered():
    for name in ('ResNet', 'ResNet18_vd', 'ResNet34_vd', 'ResNet50_vd', 'ResNet101_vd', 'ResNet152_vd',
                 'ResNetV1c', 'ResNetV1d'):
        assert name in BACKBONES


@pytest.mark.parametrize('output_stride, sizes', [(8, [16, 8, 8, 8]), (16, [16, 8, 4, 4]), (32, [16, 8, 4, 2])])
def test_output_stride_sets_feature_sizes(output_stride, sizes):
    paddle.seed(0)
    m = tiny_vd(output_stride=output_stride)
    m.eval()
    feats = m(paddle.randn([1, 3, 64, 64]))
    assert [f.shape[2] for f in feats] == sizes
    assert [f.shape[1] for f in feats] == [8, 16, 32, 64] == m.feat_channels


def test_resnet18_vd_forward():
    paddle.seed(0)
    m = ResNet18_vd()  # output stride 8 by default, as PaddleSeg
    m.eval()
    feats = m(paddle.randn([1, 3, 32, 32]))
    assert [list(f.shape[1:]) for f in feats] == [[64, 8, 8], [128, 4, 4], [256, 4, 4], [512, 4, 4]]


def test_resnet50_vd_os8_multigrid_layout():
    with paddle.LazyGuard():
        m = ResNet50_vd(output_stride=8, multi_grid=[1, 2, 4])
    assert m.feat_channels == [256, 512, 1024, 2048]
    # deep stem 32-32-64
    assert [m.stem[i].weight.shape[0] for i in (0, 3, 6)] == [32, 32, 64]
    # stage 3 dilated 2 everywhere (no contract), stage 4 = 4 * (1, 2, 4)
    assert all(_dil(b.conv2) == [2, 2] for b in m.layer3)
    assert [_dil(b.conv2)[0] for b in m.layer4] == [4, 8, 16]
    # vd shortcut: avg-pool then stride-1 1x1 conv where the stage strides, identity where dilated
    assert isinstance(m.layer2[0].downsample[0], nn.AvgPool2D)
    assert _stride(m.layer2[0].downsample[1]) == [1, 1] and _stride(m.layer2[0].conv2) == [2, 2]
    assert isinstance(m.layer3[0].downsample[0], nn.Identity)
    assert isinstance(m.layer1[0].downsample[0], nn.Identity)
    n_learned = sum(int(np.prod(v.shape)) for k, v in m.state_dict().items() if not k.endswith(('_mean', '_variance')))
    assert n_learned == 23_527_264  # PaddleSeg 2.8 ResNet50_vd (tests/manifests/deeplabv3_paddleseg.json)


def test_resnet_v1c_d8_contract_dilation():
    with paddle.LazyGuard():
        m = ResNetV1c(depth=50, strides=[1, 2, 1, 1], dilations=[1, 1, 2, 4], contract_dilation=True)
    assert [_dil(b.conv2)[0] for b in m.layer3] == [1] + [2] * 5
    assert [_dil(b.conv2)[0] for b in m.layer4] == [2, 4, 4]
    # V1c shortcut: strided 1x1 conv (no pool)
    assert isinstance(m.layer2[0].downsample[0], nn.Conv2D) and _stride(m.layer2[0].downsample[0]) == [2, 2]
    assert _stride(m.layer3[0].downsample[0]) == [1, 1]


def test_bad_options_raise_config_error():
    with pytest.raises(ConfigError, match='depth'):
        ResNet(depth=42)
    with pytest.raises(ConfigError, match='output_stride'):
        ResNet(depth=18, output_stride=4)
    with pytest.raises(ConfigError, match='multi_grid'):
        ResNet(depth=18, output_stride=8, multi_grid=[1, 2, 4])  # ResNet-18 stage 4 has 2 blocks


def test_basic_block_dilation_paddleseg_vs_mmseg():
    """In a dilated stage PaddleSeg's ResNet_vd BasicBlock dilates both 3x3 convs, mmseg's
    (ResNetV1c / V1d) the first only (found by adding mmseg's FCN R-18-D8, whose outputs then
    matched mmseg's to 2e-12 in float64)."""
    with paddle.LazyGuard():
        vd = ResNet18_vd(output_stride=8)
        v1c = ResNetV1c(depth=18, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), contract_dilation=True)
        v1c50 = ResNetV1c(depth=50, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4), contract_dilation=True)
    assert [b.conv2._dilation[0] for b in vd.layer4] == [4, 4]
    assert [(b.conv1._dilation[0], b.conv2._dilation[0]) for b in v1c.layer4] == [(2, 1), (4, 1)]
    assert [b.conv2._dilation[0] for b in v1c50.layer4] == [2, 4, 4]   # Bottleneck: the 3x3 is conv2


def test_paddleseg_key_rename():
    assert paddleseg_resnet_vd_key('conv1_1._conv.weight') == 'stem.0.weight'
    assert paddleseg_resnet_vd_key('conv1_3._batch_norm._variance') == 'stem.7._variance'
    assert paddleseg_resnet_vd_key('bb_0_0.conv0._conv.weight') == 'layer1.0.conv1.weight'
    assert paddleseg_resnet_vd_key('bb_2_22.conv2._batch_norm.bias') == 'layer3.22.bn3.bias'
    assert paddleseg_resnet_vd_key('bb_1_0.short._conv.weight') == 'layer2.0.downsample.1.weight'
    assert paddleseg_resnet_vd_key('bb_1_0.short._batch_norm._mean') == 'layer2.0.downsample.2._mean'
    assert paddleseg_resnet_vd_key('fc.weight') is None
    m = tiny_vd()
    with pytest.raises(CheckpointError, match='bb_0_0.conv9'):   # not a ResNet_vd layer: reported by name
        convert(m, 'paddleseg', {'bb_0_0.conv9._conv.weight': np.zeros([1], 'float32')})


def _paddleseg_style_checkpoint(model):
    """A PaddleSeg ResNet_vd ImageNet file: our tensors under PaddleSeg's names (inverse of
    the rename, checked key by key against paddleseg_resnet_vd_key) plus the classifier."""
    ours = model.state_dict()
    stem = {'stem.0': 'conv1_1._conv', 'stem.3': 'conv1_2._conv', 'stem.6': 'conv1_3._conv',
            'stem.1': 'conv1_1._batch_norm', 'stem.4': 'conv1_2._batch_norm', 'stem.7': 'conv1_3._batch_norm'}
    part = {'conv1': 'conv0._conv', 'bn1': 'conv0._batch_norm', 'conv2': 'conv1._conv', 'bn2': 'conv1._batch_norm',
            'downsample.1': 'short._conv', 'downsample.2': 'short._batch_norm'}
    sd = {}
    for k, v in ours.items():
        head, leaf = k.rsplit('.', 1)
        if head in stem:
            src = f'{stem[head]}.{leaf}'
        else:
            layer, idx, rest = head.split('.', 2)
            src = f'bb_{int(layer[5:]) - 1}_{idx}.{part[rest]}.{leaf}'
        assert paddleseg_resnet_vd_key(src) == k
        sd[src] = np.random.rand(*v.shape).astype('float32')
    sd['fc_0.w_0'] = np.zeros([64, 10], 'float32')
    return sd


def test_pretrained_paddleseg_tar_gz_loads_by_name(tmp_path):
    paddle.seed(0)
    m = tiny_vd()
    sd = _paddleseg_style_checkpoint(m)
    folder = tmp_path / 'ResNet18_vd_pretrained'
    folder.mkdir()
    paddle.save(sd, str(folder / 'model.pdparams'))
    archive = tmp_path / 'resnet18_vd.tar.gz'
    with tarfile.open(archive, 'w:gz') as tar:
        tar.add(folder, arcname='ResNet18_vd_pretrained')
    assert detect_source(m, sd) == 'paddleseg'
    loaded = load_weights(m, str(archive), strict=False)
    assert loaded.missing == [] and loaded.unexpected == ['fc_0.w_0']
    np.testing.assert_array_equal(m.stem[0].weight.numpy(), sd['conv1_1._conv.weight'])
    np.testing.assert_array_equal(m.layer3[0].downsample[2]._mean.numpy(), sd['bb_2_0.short._batch_norm._mean'])
    np.testing.assert_array_equal(m.layer4[1].bn2.weight.numpy(), sd['bb_3_1.conv1._batch_norm.weight'])
    # the constructor path (``pretrained:`` in a config) loads the same file
    m2 = tiny_vd(pretrained=str(archive))
    np.testing.assert_array_equal(m2.layer2[1].conv1.weight.numpy(), sd['bb_1_1.conv0._conv.weight'])


def test_pretrained_torch_names_and_missing_keys_reported(tmp_path):
    m = tiny_vd()
    torch_sd = {}
    for k, v in m.state_dict().items():
        k = k.replace('._mean', '.running_mean').replace('._variance', '.running_var')
        torch_sd[k] = np.full(v.shape, 0.5, 'float32')
        if k.endswith('running_var'):
            torch_sd[k[:-len('running_var')] + 'num_batches_tracked'] = np.array(7)
    del torch_sd['layer4.1.conv2.weight']
    path = tmp_path / 'v1c.pdparams'
    paddle.save(torch_sd, str(path))
    loaded = load_weights(m, str(path), strict=False)
    assert loaded.missing == ['layer4.1.conv2.weight'] and loaded.unexpected == []
    assert float(m.layer1[0].bn1._variance.numpy()[0]) == 0.5
    with pytest.raises(CheckpointError, match='layer4.1.conv2.weight'):
        load_weights(m, str(path), strict=True)


def test_missing_pretrained_file_is_one_line_error(tmp_path):
    with pytest.raises(CheckpointError, match='does not exist'):
        tiny_vd(pretrained=str(tmp_path / 'nope.pdparams'))
