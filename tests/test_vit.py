"""ViT backbone (MCIBI's ViT-Large): the sssegmentation module tree, timm ImageNet import
(position embeddings resized from the 24x24 grid), adaptive padding, per-output LayerNorm,
forward/backward and export with dynamic H, W. Full-size ViT-L is only built lazily (no memory)."""
import json
import os

import numpy as np
import paddle
import pytest

from _parity import assert_outputs, float64_model, load_reference_weights, reference_weights, stored, to_tensor
from zoo.models.backbones.vit import VisionTransformer, is_linear_weight, resize_pos_embed_numpy, timm_vit_key
from zoo.models.convert import detect_source, rename
from zoo.models.weights import lookup_weights
from zoo.utils.errors import ConfigError
from zoo.utils.registry import BACKBONES

MANIFEST = os.path.join(os.path.dirname(__file__), 'manifests', 'mcibi_backbones_sssegmentation.json')


@pytest.fixture(scope='module')
def manifest():
    with open(MANIFEST) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def vit_large_shapes():
    with paddle.LazyGuard():
        m = VisionTransformer(img_size=(512, 512), out_indices=(9, 14, 19, 23), out_norm=True)
    return m, {k: list(v.shape) for k, v in m.state_dict().items()}


def narrow(**kw):
    args = dict(img_size=(64, 64), embed_dims=32, num_layers=3, num_heads=4, out_indices=(0, 2))
    args.update(kw)
    return VisionTransformer(**args)


def _shape_after_import(key, shape):
    return shape[::-1] if is_linear_weight(key) else shape


def test_registered():
    assert BACKBONES.get('VisionTransformer') is VisionTransformer


def test_sssegmentation_vit_large_fills_ours(manifest, vit_large_shapes):
    m, ours = vit_large_shapes
    ref = manifest['models']['ViT-L/16-512']
    mapped = {timm_vit_key(k): _shape_after_import(timm_vit_key(k), v) for k, v in ref.items()}
    norms = {k: v for k, v in ours.items() if k.startswith('norm_layers.')}   # MCIBI's, outside the backbone
    assert mapped == {k: v for k, v in ours.items() if k not in norms}
    assert sorted(norms) == [f'norm_layers.{i}.{p}' for i in range(4) for p in ('bias', 'weight')]
    assert ours['pos_embed'] == [1, 32 * 32 + 1, 1024] and len(m.layers) == 24
    assert m.layers[0].attn.attn.num_heads == 16 and m.feat_channels == [1024] * 4


def test_timm_vit_large_384_names_map_onto_ours(manifest, vit_large_shapes):
    _, ours = vit_large_shapes
    timm = manifest['timm_vit_large_patch16_384']
    assert timm['pos_embed'] == [1, 24 * 24 + 1, 1024] and 'blocks.23.attn.qkv.weight' in timm
    mapped = {}
    for k, v in timm.items():
        new = timm_vit_key(k)
        if new is not None:
            mapped[new] = _shape_after_import(new, v)
    assert 'head.weight' in timm and not any(k.startswith('head') for k in mapped)
    # the 384 grid is resized on import; the final norm (ln1) is unused by MCIBI (final_norm false)
    assert mapped.pop('pos_embed') == [1, 577, 1024]
    assert mapped.pop('ln1.weight') == [1024] and mapped.pop('ln1.bias') == [1024]
    expect = {k: v for k, v in ours.items() if k != 'pos_embed' and not k.startswith('norm_layers.')}
    assert mapped == expect
    row = lookup_weights('jx_vit_large_p16_384')
    assert row.url.endswith('jx_vit_large_p16_384-b3be5167.pth') and row.source == 'timm'
    assert row.sha256 == 'b3be5167'  # the file name's SHA-256 prefix (timm / torch.hub convention)


def test_parity_with_sssegmentation_recorded(manifest):
    p = manifest['parity']['ViT-L/16 (timm 384 checkpoint)']
    assert p['1x3x512x512']['outputs'] == [[1, 1024, 32, 32]] * 4
    assert p['1x3x500x520']['outputs'] == [[1, 1024, 32, 33]] * 4
    assert max(p['1x3x512x512']['max_abs_diff']) <= 1e-4
    assert max(p['1x3x500x520']['max_abs_diff']) <= 1e-4


def test_our_backbone_reproduces_sssegmentation_stored_outputs():
    """Ours (a narrow ViT: ViT-L's code, width 64, 6 layers, with MCIBI's per-output LayerNorms),
    with sssegmentation's seeded weights through the timm importer (its names, torch [out, in]
    linear weights), on the stored inputs: at ``img_size`` and at an odd size (adaptive padding,
    position embeddings resized) its outputs, in float64 to 1e-8 / 5e-8 of their magnitude, not
    1e-9: Paddle keeps a LayerNorm's epsilon in float32 (1e-6 -> 9.99999997e-7, measured 6e-10
    relative on inputs of variance 1e-6) and a bilinear resize's scale ratio too (the odd-size
    position embeddings); a float32 computation anywhere would show at ~1e-6."""
    inputs, outputs, meta = stored('mcibi_backbones_sssegmentation')
    v = meta['vit']
    sd = {(k[len('backbone.'):] if k.startswith('backbone.') else k): w
          for k, w in reference_weights(meta, 'vit').items()}
    model = float64_model(VisionTransformer, img_size=v['img_size'], patch_size=v['patch_size'],
                          embed_dims=v['embed_dims'], num_layers=v['num_layers'], num_heads=v['num_heads'],
                          mlp_ratio=v['mlp_ratio'], out_indices=v['out_indices'], out_norm=True)
    model = load_reference_weights(model, meta, 'timm', key='vit', state_dict=sd)
    ours = {}
    with paddle.no_grad():
        for key in ('vit', 'vit_odd_size'):
            for i, f in enumerate(model(to_tensor(inputs[key]))):
                ours[f'{key}/{i}'] = f
    for key, tolerance in (('vit/', 1e-8), ('vit_odd_size/', 5e-8)):
        assert_outputs({k: w for k, w in outputs.items() if k.startswith(key)},
                       {k: w for k, w in ours.items() if k.startswith(key)}, tolerance)


def test_forward_backward_odd_size_and_padding():
    paddle.seed(0)
    m = narrow(out_norm=True, drop_path_rate=0.1)
    m.train()
    outs = m(paddle.randn([2, 3, 50, 70]))    # corner padding to 64 x 80 -> 4 x 5 tokens
    assert [o.shape for o in outs] == [[2, 32, 4, 5]] * 2
    sum(o.mean() for o in outs).backward()
    missing = [n for n, p in m.named_parameters() if not p.stop_gradient and p.grad is None]
    assert not missing, missing[:5]


def test_corner_padding_equals_explicit_zero_padding():
    paddle.seed(0)
    m = narrow()
    m.eval()
    x = paddle.randn([1, 3, 50, 70])
    padded = paddle.nn.functional.pad(x, [0, 10, 0, 14])   # to 64 x 80, right/bottom
    for a, b in zip(m(x), m(padded)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_timm_checkpoint_import_and_pos_embed_resize(tmp_path):
    paddle.seed(0)
    src = narrow(final_norm=True)
    src.eval()
    inverse = {'ln1.': 'norm1.', 'ln2.': 'norm2.', 'ffn.layers.0.0.': 'mlp.fc1.', 'ffn.layers.1.': 'mlp.fc2.',
               'attn.attn.in_proj_weight': 'attn.qkv.weight', 'attn.attn.in_proj_bias': 'attn.qkv.bias',
               'attn.attn.out_proj.': 'attn.proj.'}
    timm = {'head.weight': np.zeros((5, 32), 'float32')}
    for k, v in src.state_dict().items():
        v = v.numpy()
        if is_linear_weight(k):
            v = v.T.copy()        # torch layout
        if k.startswith('layers.'):
            k = 'blocks.' + k[len('layers.'):]
            for a, b in inverse.items():
                k = k.replace(a, b)
        elif k.startswith('ln1.'):
            k = 'norm.' + k[4:]
        k = k.replace('patch_embed.projection.', 'patch_embed.proj.')
        timm[k] = v
    path = str(tmp_path / 'vit.pdparams')
    paddle.save(timm, path)
    dst = narrow(final_norm=True, pretrained=path)
    dst.eval()
    x = paddle.randn([1, 3, 64, 64])
    for a, b in zip(src(x), dst(x)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    assert detect_source(dst, timm) == 'timm'
    # our own Paddle file (square out_proj weights!) is recognised as ours and not transposed
    ours = str(tmp_path / 'ours.pdparams')
    paddle.save(src.state_dict(), ours)
    assert detect_source(dst, {k: v.numpy() for k, v in src.state_dict().items()}) == 'ours'
    again = narrow(final_norm=True, pretrained=ours)
    np.testing.assert_array_equal(again.layers[0].attn.attn.out_proj.weight.numpy(),
                                  src.layers[0].attn.attn.out_proj.weight.numpy())
    # a checkpoint for another grid (2 x 2) is resized bilinearly to ours (4 x 4)
    small = {**timm, 'pos_embed': timm['pos_embed'][:, :5]}
    conv = rename(dst, 'timm', small)
    assert conv['pos_embed'].shape == (1, 17, 32)
    np.testing.assert_array_equal(conv['pos_embed'][:, 0], small['pos_embed'][:, 0])     # class token kept
    grid = small['pos_embed'][0, 1:].reshape(2, 2, 32)
    np.testing.assert_allclose(conv['pos_embed'][0, 1:].reshape(4, 4, 32)[0, 0], grid[0, 0], atol=1e-6)
    np.testing.assert_allclose(conv['pos_embed'][0, 1:].reshape(4, 4, 32).mean((0, 1)), grid.mean((0, 1)), atol=1e-5)
    assert resize_pos_embed_numpy(timm['pos_embed'], (4, 4)) is not None


def test_bad_options_raise_config_error():
    with pytest.raises(ConfigError, match='out_indices'):
        narrow(out_indices=(0, 3))
    with pytest.raises(ConfigError, match='num_heads'):
        narrow(num_heads=5)


def test_export_dynamic_hw(tmp_path):
    paddle.seed(0)
    m = narrow(out_norm=True, num_layers=2, out_indices=(1,))
    m.eval()
    static = paddle.jit.to_static(m, input_spec=[paddle.static.InputSpec([None, 3, None, None], 'float32')],
                                  full_graph=True)
    path = str(tmp_path / 'model')
    paddle.jit.save(static, path)
    loaded = paddle.jit.load(path)
    for hw in ((64, 64), (50, 90)):      # the position embeddings are resized inside the graph
        x = paddle.randn([1, 3, *hw])
        out = loaded(x)
        out = out[0] if isinstance(out, (list, tuple)) else out
        np.testing.assert_allclose(out.numpy(), m(x)[0].numpy(), atol=1e-5)
