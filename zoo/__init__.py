"""Paddle Seg Zoo: semantic segmentation models for PaddlePaddle 3 (dygraph)."""
__version__ = '0.1.0'

import warnings  # noqa: E402

# paddle warns at import when ccache (a C++ build cache) is missing; it is irrelevant here.
warnings.filterwarnings('ignore', message='No ccache found')
# paddle's BatchNorm warns on every train-mode construction that it tracks running statistics.
warnings.filterwarnings('ignore', message='When training, we now always track global mean and variance')

from . import datasets, losses, models, optim  # noqa: F401,E402  (registers every component)
from .builder import (build_dataset, build_losses, build_lr_scheduler, build_model, build_optimizer,  # noqa: F401,E402
                      validate_config)
from .utils.config import Config  # noqa: F401,E402
from .utils.errors import ConfigError, DataError, ZooError  # noqa: F401,E402
