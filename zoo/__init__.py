"""Paddle Seg Zoo: semantic segmentation models for PaddlePaddle 3 (dygraph)."""
__version__ = '0.1.0'

from .utils import quiet as _quiet  # noqa: E402

# known third-party warnings are held back (each with its reason in zoo/utils/quiet.py) before
# Paddle is imported; the tools' --verbose shows them
_quiet.install()

from . import datasets, losses, models, optim  # noqa: F401,E402  (registers every component)
from .builder import (build_dataset, build_losses, build_lr_scheduler, build_model, build_optimizer,  # noqa: F401,E402
                      validate_config)
from .utils.config import Config  # noqa: F401,E402
from .utils.errors import ConfigError, DataError, ZooError  # noqa: F401,E402
