"""Fold eval-mode BatchNorms into the convolutions before them (one job: BN folding).

Paddle Inference 3.2.2's oneDNN passes leave some conv + BN pairs unfused (measured on
Fast-SCNN: 6 of 44 BNs), and an unfused BN runs as four elementwise ops over the whole feature
map, which cost more than all the convolutions together. Folding before tracing makes the
exported graph free of BN whatever the passes do.
"""
import paddle

_BN_TYPES = (paddle.nn.BatchNorm2D, paddle.nn.BatchNorm, paddle.nn.SyncBatchNorm)
# attribute pairs recognised: ``conv`` / ``bn`` (ConvModule), ``convN`` / ``bnN`` (ResNet blocks)
_PAIRS = [('conv', 'bn')] + [(f'conv{i}', f'bn{i}') for i in range(1, 6)]


def _fold(conv, bn):
    """conv -> bn (eval) as one conv: w * g / sqrt(v + eps), (b - m) * g / sqrt(v + eps) + beta."""
    scale = bn.weight / paddle.sqrt(bn._variance + bn._epsilon)
    shape = [-1] + [1] * (len(conv.weight.shape) - 1)
    conv.weight.set_value(conv.weight * scale.reshape(shape))
    bias = conv.bias if conv.bias is not None else paddle.zeros_like(bn._mean)
    new_bias = (bias - bn._mean) * scale + bn.bias
    if conv.bias is None:
        conv.bias = conv.create_parameter(shape=[int(conv.weight.shape[0])], is_bias=True)
    conv.bias.set_value(new_bias)


def _foldable(conv, bn):
    return (isinstance(conv, paddle.nn.Conv2D) and isinstance(bn, _BN_TYPES) and not bn.training
            and int(conv.weight.shape[0]) == int(bn.weight.shape[0]))


def fold_batch_norms(model):
    """Fold every eval-mode BatchNorm that directly follows a Conv2D into the conv (in place);
    returns the number folded. Pairs: ``conv``/``bn`` and ``convN``/``bnN`` attributes, and
    consecutive Conv2D, BatchNorm in an ``nn.Sequential``."""
    folded = 0
    for layer in list(model.sublayers(include_self=True)):
        children = dict(layer.named_children())
        for c, b in _PAIRS:
            if c in children and b in children and _foldable(children[c], children[b]):
                _fold(children[c], children[b])
                setattr(layer, b, paddle.nn.Identity())
                folded += 1
        if isinstance(layer, paddle.nn.Sequential):
            names = list(children)
            for c, b in zip(names, names[1:]):
                if _foldable(children[c], children[b]):
                    _fold(children[c], children[b])
                    layer._sub_layers[b] = paddle.nn.Identity()
                    folded += 1
    return folded
