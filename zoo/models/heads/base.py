"""What every decode head shares (mmsegmentation's ``BaseDecodeHead``): input selection from
the backbone's feature list (``in_index``), dropout and the 1x1 classifier ``conv_seg``
initialised N(0, 0.01) with zero bias.

A head subclasses :class:`DecodeHead`, builds its own layers after ``super().__init__`` and
then calls :meth:`DecodeHead.add_classifier`, so parameters are created (and drawn from the
random generator) in the reference's order; it implements :meth:`forward_feature` (the
features right before dropout and the classifier). ``forward(inputs)`` takes the list of
backbone features (or one tensor) and returns logits at the selected feature's resolution;
the segmentor resizes them to the image.
"""
import paddle.nn as nn


class DecodeHead(nn.Layer):
    """Base of the decode and auxiliary heads.

    Args:
        in_channels: channels of the selected input feature.
        channels: width of the features the classifier reads.
        num_classes: classifier outputs.
        dropout_ratio: dropout before ``conv_seg`` (0 disables it).
        channel_dropout: Dropout2D (whole channels, mmseg) instead of element-wise dropout.
        in_index: which backbone feature to take when called with a list of them.
    """

    def __init__(self, in_channels, channels, num_classes, dropout_ratio=0.1, channel_dropout=True, in_index=-1):
        super().__init__()
        self.in_channels = in_channels
        self.channels = channels
        self.num_classes = num_classes
        self.in_index = in_index
        self._dropout_ratio = dropout_ratio
        self._channel_dropout = channel_dropout

    def add_classifier(self, init=True):
        """Create ``dropout`` and ``conv_seg``; ``init``: N(0, 0.01) weight, zero bias now
        (a head with its own init pass calls :meth:`init_classifier` after it instead)."""
        if self._dropout_ratio > 0:
            self.dropout = (nn.Dropout2D(self._dropout_ratio) if self._channel_dropout
                            else nn.Dropout(self._dropout_ratio))
        else:
            self.dropout = None
        self.conv_seg = nn.Conv2D(self.channels, self.num_classes, 1)
        if init:
            self.init_classifier()

    def init_classifier(self):
        """mmseg ``BaseDecodeHead.init_cfg``: conv_seg ~ N(0, 0.01), bias 0."""
        nn.initializer.Normal(0.0, 0.01)(self.conv_seg.weight)
        nn.initializer.Constant(0.0)(self.conv_seg.bias)

    def select_input(self, inputs):
        """A list/tuple of backbone features is indexed with ``in_index``; a tensor passes through."""
        if isinstance(inputs, (list, tuple)):
            return inputs[self.in_index]
        return inputs

    def forward_feature(self, inputs):
        """Features right before dropout + classifier (``channels`` wide)."""
        raise NotImplementedError

    def classify(self, feat):
        """Dropout then ``conv_seg`` (mmseg's ``cls_seg``)."""
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.conv_seg(feat)

    def forward(self, inputs):
        return self.classify(self.forward_feature(inputs))
