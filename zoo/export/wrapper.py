"""The deployed graph: a trained model, in eval mode, followed by its output op.

``build_export_model(config, model_path)`` builds the config's model without fetching
pretrained weights, loads the trained ones strictly, folds its BatchNorms and wraps it.
"""

import paddle
import paddle.nn.functional as F

from ..builder import as_config, build_model
from ..models.weights import without_pretrained
from ..utils.checkpoint import load_state_dict_checked, read_state_dict
from ..utils.errors import ConfigError
from ..utils.logger import logger
from .fold_bn import fold_batch_norms

OUTPUT_OPS = ('argmax', 'softmax', 'none')


class ExportWrapper(paddle.nn.Layer):
    """The main logits of the model followed by the output op.

    ``argmax`` -> int32 ``[N, H, W]`` class ids; ``softmax`` -> float32 ``[N, C, H, W]``
    probabilities; ``none`` -> float32 ``[N, C, H, W]`` logits.
    """

    def __init__(self, model, output_op='argmax'):
        super().__init__()
        if output_op not in OUTPUT_OPS:
            raise ConfigError(f'--output_op: expected one of {", ".join(OUTPUT_OPS)}, got {output_op!r}')
        self.model = model
        self.output_op = output_op

    def forward(self, x):
        logits = self.model(x)[0]
        if self.output_op == 'argmax':
            return paddle.argmax(logits, axis=1, dtype='int32')
        if self.output_op == 'softmax':
            return F.softmax(logits, axis=1)
        return logits


def output_dtype(output_op):
    return 'int32' if output_op == 'argmax' else 'float32'


def check_input_shape(input_shape, where='--input_shape'):
    """``None`` -> dynamic ``[-1, 3, -1, -1]``; else four ints ``N C H W`` (-1 = dynamic)."""
    if input_shape is None:
        return [-1, 3, -1, -1]
    shape = list(input_shape)
    if len(shape) != 4 or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise ConfigError(f'{where}: expected four integers N C H W, got {input_shape!r}')
    if shape[1] != 3:
        raise ConfigError(f'{where}: the channel dimension must be 3 (RGB), got {shape[1]}')
    if any(s == 0 or s < -1 for s in shape):
        raise ConfigError(f'{where}: sizes must be positive or -1 (dynamic), got {shape}')
    return shape


def build_export_model(config, model_path=None, output_op='argmax'):
    """Build the config's model, load ``model_path`` (strictly) and wrap it for export."""
    cfg = as_config(config)
    model = build_model(without_pretrained(cfg) if model_path else cfg)
    if model_path:
        sd = read_state_dict(model_path, 'model weights')
        load_state_dict_checked(model, sd, f'--model_path {model_path}', strict=True)
    else:
        logger.warning('no --model_path given: exporting the randomly initialized / pretrained weights')
    return cfg, prepare_export_model(model, output_op)


def prepare_export_model(model, output_op='argmax'):
    """Eval mode, BatchNorms folded into their convs (in place), wrapped with the output op."""
    model.eval()
    fold_batch_norms(model)
    wrapper = ExportWrapper(model, output_op)
    wrapper.eval()
    return wrapper
