"""Everything a training run checks before its first iteration, so a mistake costs seconds,
not the iterations before the first evaluation or save.

* the whole config, whether or not ``--do_eval`` is given: components (model, datasets and
  their transforms, loss, optimizer, LR schedule: ``builder.validate_config``), the plain
  sections (``train``, ``test_config``, ``export``: the schema in ``utils/config.py``), the
  ``test_config`` protocol itself, and the val and export transforms built once;
* the command-line options (``--save_interval 0``, ``--num_workers -1``, ``--seed -1``, a
  negative learning rate, a batch larger than the dataset);
* the checkpoint to resume from (see :func:`read_train_state`).

Each problem is one :class:`ConfigError` line naming the key or flag.
"""
import copy

from ..builder import check_component, validate_config
from ..utils.errors import CheckpointError, ConfigError
from ..utils.registry import TRANSFORMS


def pick(flag_value, config_value, default):
    """A command-line value wins when given (0 included), then the config's, then the default."""
    if flag_value is not None:
        return flag_value
    return default if config_value is None else config_value


def check_positive(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f'{name}: expected an integer >= {minimum}, got {value!r}')
    return value


def check_transforms(cfg, key):
    """Check a list of transform dicts against their constructors and build each once (a bad
    value, e.g. a negative crop size, fails now rather than at the first sample)."""
    from ..builder import _instantiate
    items = cfg.get(key)
    if items is None:
        return
    if not isinstance(items, list):
        raise cfg.error(key, f'expected a list of transform dicts, got {items!r}')
    for i, t in enumerate(items):
        check_component(t, f'{key}.{i}', cfg, TRANSFORMS)
        try:
            _instantiate(copy.deepcopy(t), TRANSFORMS)
        except ConfigError as e:  # the transform names its argument; add where it is in the config
            raise cfg.error(f'{key}.{i}', str(e)) from None
        except (TypeError, ValueError) as e:
            raise cfg.error(f'{key}.{i}', f'{t["type"]}: {e}') from None


def validate_run_config(cfg, align_corners=None):
    """The config checks of a training run (see the module docstring)."""
    from .inference import parse_test_config
    lr = cfg.get('lr_scheduler.learning_rate')  # before the scheduler is built (Paddle's own message names no key)
    if lr is not None and not lr > 0:
        raise cfg.error('lr_scheduler.learning_rate', f'must be positive, got {lr!r}')
    validate_config(cfg, for_training=True)
    parse_test_config(cfg.test_config, align_corners=align_corners, where=cfg.where('test_config'))
    for key in ('val_dataset.transforms', 'export.transforms'):
        check_transforms(cfg, key)


def check_batch_fits(cfg, dataset_len, world_size):
    per_rank = -(-dataset_len // world_size)
    if cfg.batch_size > per_rank:
        ranks = f' x {world_size} ranks' if world_size > 1 else ''
        raise cfg.error('batch_size', f'{cfg.batch_size}{ranks} is larger than the training set '
                        f'({dataset_len} samples{f", {per_rank} per rank" if world_size > 1 else ""}); '
                        'lower batch_size or add data')


def read_train_state(state, path, total_iters):
    """Check a loaded ``train_state.pdstates``; return (iteration, best_miou)."""
    if not isinstance(state, dict) or 'iteration' not in state:
        raise CheckpointError(f'{path}: not a train state (no "iteration" key); expected the '
                              'train_state.pdstates of a save_dir/iter_N checkpoint')
    it = state['iteration']
    if isinstance(it, bool) or not isinstance(it, int) or it < 0:
        raise CheckpointError(f'{path}: "iteration" must be a non-negative integer, got {it!r}')
    if it >= total_iters:
        raise ConfigError(f'--resume_model: the checkpoint is at iteration {it} but the run has iters={total_iters}: '
                          'nothing left to train (raise --iters to continue)')
    best = state.get('best_miou', -1.0)
    try:
        best = float(best)
    except (TypeError, ValueError):
        raise CheckpointError(f'{path}: "best_miou" must be a number, got {best!r}') from None
    return it, best
