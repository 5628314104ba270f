from .errors import CheckpointError, ConfigError, DataError, ZooError  # noqa: F401
from .registry import BACKBONES, DATASETS, HEADS, LOSSES, MODELS, TRANSFORMS  # noqa: F401
