"""The segmentor every model is (mmsegmentation's ``EncoderDecoder``, torchvision's
``_SimpleSegmentationModel``): backbone -> decode head -> auxiliary heads (training only) ->
logits resized to the input.

A model subclasses :class:`Segmentor`, builds its parts in ``__init__`` (after
``super().__init__``) as ``backbone``, ``decode_head`` and ``auxiliary_head`` (None, a head or a
LayerList of heads), and ends with :meth:`init_pretrained`. Heads take the backbone's feature
list and pick their input themselves (``in_index``). A model whose parts are named otherwise
by its reference (RegSeg's ``stem``/``body``/``decoder``, MCIBI's decoders and memory)
overrides :meth:`extract_feat`, :meth:`decode` or :meth:`auxiliary_heads`; nothing else.

Output contract (``docs/architecture.md``): ``forward(x)`` returns a list of logits at the
input's H, W; training: the main logits first, then the auxiliary heads in the order of
``loss.coef`` (named by ``output_names``); eval: ``[main]``.
"""
import paddle.nn as nn

from zoo.models.convert import load_weights
from zoo.models.layers import input_hw, resize
from zoo.utils.errors import ConfigError


class Segmentor(nn.Layer):
    """Base of every model.

    Args:
        num_classes: number of classes.
        align_corners: of the final resize (and of the model's own resizes).
    """

    # key prefixes of the parts used in training only: a checkpoint's tensors there are
    # skipped when the model is built without them
    training_only = ('auxiliary_head.',)
    # parameter prefixes a pretrained file may fill with another shape (kept as initialised)
    keep_mismatched = ()

    def __init__(self, num_classes, align_corners=False):
        super().__init__()
        self.num_classes = num_classes
        self.align_corners = align_corners

    @staticmethod
    def check_backbone(backbone, example='ResNetV1c'):
        """A config's ``backbone`` must be a built backbone exposing ``feat_channels``."""
        if not isinstance(backbone, nn.Layer) or not hasattr(backbone, 'feat_channels'):
            got = type(backbone).__name__ if isinstance(backbone, nn.Layer) else repr(backbone)
            raise ConfigError(f'model.backbone: expected a backbone type dict (e.g. {example}), got {got}')
        return backbone

    def init_pretrained(self, pretrained):
        """Load whole-model ``pretrained`` weights (ours, a table name, or a foreign
        checkpoint: see ``zoo.models.convert.load_weights``); None keeps the initialisation."""
        if pretrained:
            load_weights(self, pretrained, strict=True, keep_mismatched=self.keep_mismatched)

    # -- the pipeline ------------------------------------------------------------------

    def extract_feat(self, x):
        """The backbone's features (a list)."""
        return self.backbone(x)

    def decode(self, feats):
        """The decode head's logits, main first (a list; MCIBI returns two stages)."""
        return [self.decode_head(feats)]

    def auxiliary_heads(self):
        head = getattr(self, 'auxiliary_head', None)
        if head is None:
            return []
        return list(head) if isinstance(head, nn.LayerList) else [head]

    @property
    def output_names(self):
        """Names of the training outputs (loss and log tags)."""
        n = len(self.auxiliary_heads())
        return ['main'] + [f'aux{i}' for i in range(1, n + 1)]

    def forward(self, x):
        feats = self.extract_feat(x)
        logits = self.decode(feats)
        if self.training:
            logits += [head(feats) for head in self.auxiliary_heads()]
        else:
            logits = logits[:1]
        size = input_hw(x)
        return [resize(logit, size, align_corners=self.align_corners) for logit in logits]
