"""Vision Transformer backbone (Dosovitskiy et al., "An Image is Worth 16x16 Words",
arXiv:2010.11929) for dense prediction, as sssegmentation builds it
(``ssseg/modules/models/backbones/vit.py``, mmseg's layout) for MCIBI's ViT-Large rows.

* patch embedding: a 16x16 stride-16 conv after "corner" adaptive padding (right/bottom zeros
  up to a multiple of the patch size), a class token and learned position embeddings for the
  ``img_size`` grid, bilinearly resized to the actual token grid at run time;
* pre-norm encoder layers: ``x + attn(ln1(x))``, ``x + ffn(ln2(x))`` (LayerNorm eps 1e-6,
  GELU MLP of ``mlp_ratio`` x width);
* the outputs of layers ``out_indices`` (MCIBI: 9, 14, 19, 23) without the class token, as
  NCHW maps at 1/16 of the input. ``out_norm`` applies one LayerNorm per output: in
  sssegmentation that is MCIBI's ``norm_layers`` (head ``norm_cfg``), kept here under the
  same name so every MCIBI head reads plain feature maps.

Parameter names are sssegmentation's (``patch_embed.projection``, ``layers.<i>.ln1``,
``layers.<i>.attn.attn.in_proj_weight`` / ``out_proj``, ``layers.<i>.ffn.layers.0.0`` /
``.1``); linear weights are stored in Paddle's [in, out] layout (the importers transpose).
The ``timm`` importer reads timm's ImageNet-22k ``vit_large_patch16_384``
(``jx_vit_large_p16_384-b3be5167.pth``, what the reference loads) and sssegmentation's ViT.
"""
import math

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from zoo.models.convert import load_weights, register_importer, torch_key
from zoo.models.layers import resize
from zoo.models.weights import Weights, register_weights
from zoo.utils.download import name_hash_prefix
from zoo.utils.errors import CheckpointError, ConfigError
from zoo.utils.registry import BACKBONES

LN_EPS = 1e-6


class DropPath(nn.Layer):
    """Stochastic depth: drop whole residual branches per sample in training."""

    def __init__(self, p=0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = paddle.floor(keep + paddle.rand([paddle.shape(x)[0]] + [1] * (x.ndim - 1), dtype=x.dtype))
        return x / keep * mask


class MultiheadAttention(nn.Layer):
    """torch ``nn.MultiheadAttention`` (batch first, self-attention): one packed q/k/v
    projection ``in_proj_weight`` ([C, 3C] here) and ``out_proj``."""

    def __init__(self, embed_dims, num_heads, attn_drop=0.0, bias=True):
        super().__init__()
        if embed_dims % num_heads:
            raise ConfigError(f'model.backbone.embed_dims: {embed_dims} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.in_proj_weight = self.create_parameter([embed_dims, 3 * embed_dims])
        self.in_proj_bias = self.create_parameter([3 * embed_dims], is_bias=True) if bias else None
        self.out_proj = nn.Linear(embed_dims, embed_dims, bias_attr=None if bias else False)
        self.attn_drop = nn.Dropout(attn_drop)

    def forward(self, x):
        qkv = paddle.matmul(x, self.in_proj_weight)
        if self.in_proj_bias is not None:
            qkv = qkv + self.in_proj_bias
        # [B, N, 3C] -> 3 x [B, heads, N, d]
        qkv = qkv.reshape([0, 0, 3, self.num_heads, self.head_dims]).transpose([2, 0, 3, 1, 4])
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = F.softmax(paddle.matmul(q * (self.head_dims ** -0.5), k, transpose_y=True), axis=-1)
        out = paddle.matmul(self.attn_drop(attn), v).transpose([0, 2, 1, 3])
        return self.out_proj(out.reshape([0, 0, self.num_heads * self.head_dims]))


class AttentionBlock(nn.Layer):
    """sssegmentation's ``MultiheadAttention`` wrapper: ``identity + drop(attn(x))``."""

    def __init__(self, embed_dims, num_heads, attn_drop=0.0, proj_drop=0.0, bias=True):
        super().__init__()
        self.attn = MultiheadAttention(embed_dims, num_heads, attn_drop, bias)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x, identity):
        return identity + self.proj_drop(self.attn(x))


class FFN(nn.Layer):
    """``layers.0`` = (Linear, GELU, Dropout), ``layers.1`` = Linear, ``layers.2`` = Dropout."""

    def __init__(self, embed_dims, feedforward_channels, ffn_drop=0.0, drop_path=0.0):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(embed_dims, feedforward_channels), nn.GELU(), nn.Dropout(ffn_drop)),
            nn.Linear(feedforward_channels, embed_dims), nn.Dropout(ffn_drop))
        self.dropout_layer = DropPath(drop_path)

    def forward(self, x, identity):
        return identity + self.dropout_layer(self.layers(x))


class TransformerEncoderLayer(nn.Layer):
    def __init__(self, embed_dims, num_heads, feedforward_channels, drop_rate=0.0, attn_drop_rate=0.0,
                 drop_path_rate=0.0, qkv_bias=True):
        super().__init__()
        self.ln1 = nn.LayerNorm(embed_dims, epsilon=LN_EPS)
        self.attn = AttentionBlock(embed_dims, num_heads, attn_drop_rate, drop_rate, qkv_bias)
        self.ln2 = nn.LayerNorm(embed_dims, epsilon=LN_EPS)
        self.ffn = FFN(embed_dims, feedforward_channels, drop_rate, drop_path_rate)

    def forward(self, x):
        x = self.attn(self.ln1(x), identity=x)
        return self.ffn(self.ln2(x), identity=x)


class PatchEmbed(nn.Layer):
    """Corner adaptive padding + ``patch_size`` conv. Padding by ``patch_size - 1`` on the
    right/bottom gives the same ``ceil(H / p)`` windows over the same zeros as the reference's
    exact padding, without a data-dependent pad (so the graph exports with dynamic H, W)."""

    def __init__(self, in_channels, embed_dims, patch_size, bias=True):
        super().__init__()
        self.patch_size = patch_size
        self.projection = nn.Conv2D(in_channels, embed_dims, patch_size, stride=patch_size,
                                    bias_attr=None if bias else False)

    def forward(self, x):
        p = self.patch_size - 1
        if p:
            x = F.pad(x, [0, p, 0, p])
        x = self.projection(x)
        hw = paddle.shape(x)[2:]
        return x.flatten(2).transpose([0, 2, 1]), hw


def resize_pos_embed(pos_embed, dst_hw, src_hw):
    """[1, 1 + h*w, C] position embeddings from grid ``src_hw`` to ``dst_hw`` (bilinear,
    align_corners False, as the reference's ``resizeposembed``); the class token's entry is kept."""
    c = pos_embed.shape[2]
    cls_pos = pos_embed[:, :1]
    grid = pos_embed[:, 1:].reshape([1, int(src_hw[0]), int(src_hw[1]), c]).transpose([0, 3, 1, 2])
    grid = resize(grid, dst_hw, align_corners=False)
    return paddle.concat([cls_pos, grid.flatten(2).transpose([0, 2, 1])], axis=1)


@BACKBONES.register()
class VisionTransformer(nn.Layer):
    """ViT returning the token maps of ``out_indices`` layers at 1/``patch_size`` (NCHW).

    Args:
        img_size: training crop (H, W) the position embeddings are kept for (MCIBI: 512).
        patch_size, embed_dims, num_layers, num_heads, mlp_ratio, qkv_bias: the architecture
            (ViT-L/16: 16, 1024, 24, 16, 4, true).
        out_indices: encoder layers whose outputs are returned.
        drop_rate, attn_drop_rate, drop_path_rate: dropout after position embedding /
            projections / MLP, on attention weights, stochastic depth (linear over depth).
        out_norm: one LayerNorm (eps 1e-6) per returned map (MCIBI's ``norm_layers``).
        final_norm: LayerNorm after the last layer (timm's ``norm``; unused by MCIBI).
        pretrained: path or URL of timm-format ImageNet weights (``vit_large_patch16_384``)
            or of ours; position embeddings are resized to the ``img_size`` grid.
    """

    def __init__(self, img_size=(512, 512), patch_size=16, in_channels=3, embed_dims=1024, num_layers=24,
                 num_heads=16, mlp_ratio=4, qkv_bias=True, out_indices=(9, 14, 19, 23), drop_rate=0.0,
                 attn_drop_rate=0.0, drop_path_rate=0.0, out_norm=False, final_norm=False, pretrained=None):
        super().__init__()
        img_size = (int(img_size), int(img_size)) if isinstance(img_size, (int, float)) else tuple(img_size)
        if len(img_size) != 2:
            raise ConfigError(f'model.backbone.img_size: expected an int or [H, W], got {img_size!r}')
        bad = [i for i in out_indices if not 0 <= int(i) < num_layers]
        if bad:
            raise ConfigError(f'model.backbone.out_indices: {bad} of {list(out_indices)} not in [0, {num_layers})')
        self.img_size = img_size
        self.patch_size = patch_size
        self.embed_dims = embed_dims
        self.out_indices = tuple(int(i) for i in out_indices)
        self.pos_hw = (img_size[0] // patch_size, img_size[1] // patch_size)
        self.patch_embed = PatchEmbed(in_channels, embed_dims, patch_size)
        self.cls_token = self.create_parameter([1, 1, embed_dims], default_initializer=nn.initializer.Constant(0.0))
        self.pos_embed = self.create_parameter([1, self.pos_hw[0] * self.pos_hw[1] + 1, embed_dims],
                                               default_initializer=nn.initializer.TruncatedNormal(std=0.02))
        self.drop_after_pos = nn.Dropout(drop_rate)
        dpr = np.linspace(0, drop_path_rate, num_layers).tolist()
        self.layers = nn.LayerList([
            TransformerEncoderLayer(embed_dims, num_heads, int(mlp_ratio * embed_dims), drop_rate, attn_drop_rate,
                                    dpr[i], qkv_bias) for i in range(num_layers)])
        self.ln1 = nn.LayerNorm(embed_dims, epsilon=LN_EPS) if final_norm else None
        self.norm_layers = None
        if out_norm:
            self.norm_layers = nn.LayerList([nn.LayerNorm(embed_dims, epsilon=LN_EPS) for _ in self.out_indices])
        self.feat_channels = [embed_dims] * len(self.out_indices)
        if pretrained:
            load_weights(self, pretrained, strict=False)

    def forward(self, x):
        tokens, hw = self.patch_embed(x)
        cls = self.cls_token.expand([paddle.shape(tokens)[0], -1, -1])
        tokens = paddle.concat([cls, tokens], axis=1)
        # resizing to the same grid is exact, so this also covers the img_size input
        pos = resize_pos_embed(self.pos_embed, hw, self.pos_hw)
        tokens = self.drop_after_pos(tokens + pos)
        outs = []
        for i, layer in enumerate(self.layers):
            tokens = layer(tokens)
            if i == len(self.layers) - 1 and self.ln1 is not None:
                tokens = self.ln1(tokens)
            if i in self.out_indices:
                out = tokens[:, 1:]
                if self.norm_layers is not None:
                    out = self.norm_layers[len(outs)](out)
                out = out.transpose([0, 2, 1]).reshape([0, self.embed_dims, hw[0], hw[1]])
                outs.append(out)
        return outs


# -- importers ------------------------------------------------------------------------

# timm name -> sssegmentation/our name, inside ``blocks.<i>.``
_TIMM_BLOCK = (('norm1.', 'ln1.'), ('norm2.', 'ln2.'), ('mlp.fc1.', 'ffn.layers.0.0.'), ('mlp.fc2.', 'ffn.layers.1.'),
               ('attn.qkv.weight', 'attn.attn.in_proj_weight'), ('attn.qkv.bias', 'attn.attn.in_proj_bias'),
               ('attn.proj.', 'attn.attn.out_proj.'))
_LINEAR_WEIGHTS = ('attn.attn.in_proj_weight', 'attn.attn.out_proj.weight', 'ffn.layers.0.0.weight',
                   'ffn.layers.1.weight')


def resize_pos_embed_numpy(pos_embed, dst_hw):
    """Resize a square-grid [1, 1 + n*n, C] position embedding to ``dst_hw`` (numpy in, out)."""
    pos_embed = np.asarray(pos_embed, 'float32')
    n = int(round(math.sqrt(pos_embed.shape[1] - 1)))
    if n * n != pos_embed.shape[1] - 1:
        raise CheckpointError(f'pos_embed {list(pos_embed.shape)} is not a square grid plus a class token')
    if (n, n) == tuple(dst_hw):
        return pos_embed
    with paddle.no_grad():
        return resize_pos_embed(paddle.to_tensor(pos_embed), list(dst_hw), (n, n)).numpy()


def timm_vit_key(key, model=None):
    """One timm (or sssegmentation) ViT key in our names; None for the ImageNet ``head``."""
    if key.startswith('head'):
        return None
    if key.startswith('norm.'):
        return 'ln1.' + key[len('norm.'):]
    if key.startswith('patch_embed.proj.'):
        return 'patch_embed.projection.' + key[len('patch_embed.proj.'):]
    if key.startswith('blocks.'):
        for a, b in _TIMM_BLOCK:
            key = key.replace(a, b)
        return 'layers.' + key[len('blocks.'):]
    return torch_key(key)


def is_linear_weight(key):
    """Our keys whose torch value is transposed on import ([out, in] -> [in, out])."""
    return key.endswith(_LINEAR_WEIGHTS)


def torch_vit_value(key, value, model):
    """torch Linear weights [out, in] -> Paddle's [in, out]; the position embeddings resized
    (bilinear) to the model's ``img_size`` grid."""
    if is_linear_weight(key):
        return np.ascontiguousarray(np.asarray(value).T)
    if key == 'pos_embed':
        return resize_pos_embed_numpy(value, model.pos_hw)
    return value


def _is_torch_vit(state_dict):
    """timm names (``blocks.<i>``), or ours with the packed q/k/v projection in torch's [3C, C]."""
    return any(k.startswith('blocks.') or (k.endswith('in_proj_weight') and np.shape(v)[0] == 3 * np.shape(v)[1])
               for k, v in state_dict.items())


# timm ViT (``vit_large_patch16_384`` / ``jx_vit_large_p16_384``) or sssegmentation ViT weights:
# timm ``blocks.N`` -> ``layers.N``, ``norm1/2`` -> ``ln1/2``, ``attn.qkv`` -> packed ``in_proj``,
# ``mlp.fc1/fc2`` -> ``ffn.layers.0.0/1``, ``patch_embed.proj`` -> ``projection``, final ``norm`` ->
# ``ln1``; the ImageNet ``head`` is dropped (as the reference's ``vitconvert``)
register_importer('VisionTransformer', 'timm', value=torch_vit_value, detect=_is_torch_vit)(timm_vit_key)

_JX_VIT_L = ('https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-vitjx/'
             'jx_vit_large_p16_384-b3be5167.pth')
register_weights(Weights('jx_vit_large_p16_384', 'VisionTransformer', 'timm', _JX_VIT_L, name_hash_prefix(_JX_VIT_L),
                         recipe="timm's vit_large_patch16_384: ImageNet-21k, fine-tuned on ImageNet-1k at 384; "
                                "sssegmentation's jx_vit_large_p16_384"))
