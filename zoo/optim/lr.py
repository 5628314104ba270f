"""Learning-rate schedules, stepped once per iteration, and the linear warmup every schedule takes.

YAML::

    lr_scheduler:
      type: PolynomialDecay     # CosineDecay | ConstantLR | OneCycle | any paddle.optimizer.lr class by name
      learning_rate: 0.01
      end_lr: 1.0e-4
      power: 0.9
      end_lr_at_last_iter: true # mmseg's PolyLR; false: PaddleSeg / sssegmentation / RegSeg
      warmup_iters: 1000        # every schedule, 0 = none
      warmup_start_lr: 1.0e-3   # or warmup_ratio: 0.1 (the first lr as a fraction of the schedule's)
      warmup_mode: sequential   # or multiplicative

The schedules registered here are closed forms of the iteration ``t`` (values do not drift with
rounding over a long run, and a resumed run continues exactly) and take the run's length
``iters`` from the config. Every other ``paddle.optimizer.lr`` schedule is available by its class
name with its own arguments (``ExponentialDecay: {learning_rate, gamma}``, ``MultiStepDecay:
{learning_rate, milestones, gamma}``, ``CosineAnnealingWarmRestarts``, ...; counts are
iterations), except those that need a Python callable or a metric (``LambdaDecay``,
``MultiplicativeDecay``, ``ReduceOnPlateau``) and ``LinearWarmup`` (the ``warmup_*`` keys below).

Warmup (:class:`Warmup`), in the two forms the reference projects use, over ``W = warmup_iters``:

* ``sequential`` (PaddleSeg's ``LinearWarmup``; mmengine's ``LinearLR`` followed by a schedule that
  begins where it ends): the lr rises linearly from ``warmup_start_lr`` to the schedule's first
  value during ``t < W``; then the schedule runs from its own iteration 0 over the remaining
  ``iters - W`` iterations.
* ``multiplicative`` (sssegmentation's ``linear`` warmup, RegSeg's ``warmup_factor``): the schedule
  runs on the global clock over ``iters`` and, for ``t < W``, is multiplied by
  ``r + (1 - r) * t / W`` where ``r = warmup_ratio``.
"""
import inspect
import math

import paddle

from ..utils.errors import ConfigError
from ..utils.registry import LR_SCHEDULERS

WARMUP_MODES = ('sequential', 'multiplicative')


class IterationSchedule(paddle.optimizer.lr.LRScheduler):
    """A schedule written as ``lr_at(t)``; ``get_lr`` evaluates it at ``last_epoch`` (the iteration)."""

    def lr_at(self, t):
        raise NotImplementedError

    def get_lr(self):
        return self.lr_at(self.last_epoch)


def _decay_length(iters, decay_steps, end_lr_at_last_iter):
    if decay_steps is not None:
        if decay_steps < 1:
            raise ConfigError(f'lr_scheduler.decay_steps: must be >= 1, got {decay_steps}')
        return int(decay_steps)
    return max(int(iters) - (1 if end_lr_at_last_iter else 0), 1)


@LR_SCHEDULERS.register()
class PolynomialDecay(IterationSchedule):
    """``(learning_rate - end_lr) * (1 - t / T) ** power + end_lr``, then ``end_lr`` after ``T``.

    Args:
        learning_rate: the lr at iteration 0.
        iters: length of the schedule (from the config; minus the warmup in sequential warmup).
        end_lr: mmseg's ``eta_min``, PaddleSeg's ``end_lr``, sssegmentation's ``min_lr``.
        power: 0.9 in every seed recipe.
        decay_steps: ``T`` explicitly (default from ``iters`` and ``end_lr_at_last_iter``).
        end_lr_at_last_iter: ``T = iters - 1``, so the last iteration runs at ``end_lr``
            (mmengine's ``PolyLR``: ``total_iters = end - begin - 1``); false: ``T = iters``, so
            ``end_lr`` would be reached one iteration after the last (Paddle's
            ``PolynomialDecay(decay_steps=iters)`` as PaddleSeg uses it, sssegmentation's
            ``PolyScheduler``, RegSeg's ``poly_lr_scheduler``).
    """

    def __init__(self, learning_rate, iters, end_lr=0.0, power=0.9, decay_steps=None, end_lr_at_last_iter=False):
        self.end_lr = float(end_lr)
        self.power = float(power)
        self.decay_steps = _decay_length(iters, decay_steps, end_lr_at_last_iter)
        super().__init__(learning_rate=float(learning_rate))

    def lr_at(self, t):
        t = min(t, self.decay_steps)
        return (self.base_lr - self.end_lr) * (1 - t / self.decay_steps) ** self.power + self.end_lr


@LR_SCHEDULERS.register()
class CosineDecay(IterationSchedule):
    """Half a cosine from ``learning_rate`` to ``end_lr``:
    ``end_lr + (learning_rate - end_lr) * (1 + cos(pi * t / T)) / 2``, then ``end_lr`` after ``T``
    (mmengine's ``CosineAnnealingLR(T_max=T, eta_min=end_lr)`` in closed form; ``T`` as in
    :class:`PolynomialDecay`)."""

    def __init__(self, learning_rate, iters, end_lr=0.0, decay_steps=None, end_lr_at_last_iter=False):
        self.end_lr = float(end_lr)
        self.decay_steps = _decay_length(iters, decay_steps, end_lr_at_last_iter)
        super().__init__(learning_rate=float(learning_rate))

    def lr_at(self, t):
        t = min(t, self.decay_steps)
        return self.end_lr + (self.base_lr - self.end_lr) * (1 + math.cos(math.pi * t / self.decay_steps)) / 2


@LR_SCHEDULERS.register()
class ConstantLR(IterationSchedule):
    """The same lr at every iteration (with a warmup, the lr after it)."""

    def __init__(self, learning_rate):
        super().__init__(learning_rate=float(learning_rate))

    def lr_at(self, t):
        return self.base_lr


@LR_SCHEDULERS.register()
class OneCycle(paddle.optimizer.lr.OneCycleLR):
    """One cycle over the run (Smith & Topin 2019; Paddle's ``OneCycleLR`` with
    ``total_steps = iters``): from ``learning_rate / divide_factor`` up to ``learning_rate``
    during the first ``phase_pct`` of the run, then down to ``end_learning_rate``
    (``anneal_strategy`` 'cos' or 'linear'; ``three_phase`` as Paddle's)."""

    def __init__(self, learning_rate, iters, divide_factor=25.0, end_learning_rate=1e-4, phase_pct=0.3,
                 anneal_strategy='cos', three_phase=False):
        if anneal_strategy not in ('cos', 'linear'):
            raise ConfigError(f"lr_scheduler.anneal_strategy: expected 'cos' or 'linear', got {anneal_strategy!r}")
        if not 0 < phase_pct < 1:
            raise ConfigError(f'lr_scheduler.phase_pct: must be in (0, 1), got {phase_pct}')
        super().__init__(max_learning_rate=float(learning_rate), total_steps=int(iters),
                         divide_factor=float(divide_factor), end_learning_rate=float(end_learning_rate),
                         phase_pct=float(phase_pct), anneal_strategy=anneal_strategy, three_phase=bool(three_phase))


class WarmupSchedule(paddle.optimizer.lr.LRScheduler):
    """``schedule`` with a linear warmup over its first ``warmup_iters`` iterations (see :class:`Warmup`).

    The wrapped schedule is stepped once per iteration it runs (from the end of a sequential
    warmup, from the start otherwise), so recursive Paddle schedules work too; its state is saved
    with this one's (``state_dict()['schedule']``)."""

    def __init__(self, schedule, warmup_iters, start_lr, mode):
        self.schedule = schedule
        self.warmup_iters = int(warmup_iters)
        self.mode = mode
        self.first_lr = float(schedule.last_lr)  # the schedule's value at its iteration 0
        self.start_lr = float(start_lr)
        super().__init__(learning_rate=self.first_lr)

    def _schedule_lr(self, t):
        """The wrapped schedule's lr at its own iteration ``t`` (stepping it there)."""
        if t != self.schedule.last_epoch:
            if t == self.schedule.last_epoch + 1:
                self.schedule.step()
            else:
                self.schedule.step(t)
        return float(self.schedule.last_lr)

    def get_lr(self):
        t, w = self.last_epoch, self.warmup_iters
        if self.mode == 'sequential':
            if t < w:
                return self.start_lr + (self.first_lr - self.start_lr) * t / w
            return self._schedule_lr(t - w)
        lr = self._schedule_lr(t)
        if t < w:
            ratio = self.start_lr / self.first_lr if self.first_lr else 0.0
            lr *= ratio + (1 - ratio) * t / w
        return lr

    def state_dict(self):
        state = super().state_dict()
        state['schedule'] = self.schedule.state_dict()
        return state

    def set_state_dict(self, state_dict):
        state = dict(state_dict)
        inner = state.pop('schedule', None)
        if inner is None:
            raise ConfigError('the checkpoint\'s lr scheduler state has no warmup schedule state: it was saved '
                              'by a config without warmup')
        super().set_state_dict(state)
        self.schedule.set_state_dict(inner)


@LR_SCHEDULERS.set_common
class Warmup:
    """The ``warmup_*`` keys every ``lr_scheduler`` accepts.

    Args:
        iters: the run's length (from the config).
        warmup_iters: ``W``; 0 turns warmup off.
        warmup_start_lr: the lr at iteration 0 (default 0).
        warmup_ratio: or the same as a fraction of the schedule's first lr (mmengine's
            ``start_factor``, sssegmentation's ``ratio``, RegSeg's ``warmup_factor``).
        warmup_mode: 'sequential' (PaddleSeg) or 'multiplicative' (sssegmentation, RegSeg); see
            the module docstring.
    """

    def __init__(self, iters, warmup_iters=0, warmup_start_lr=None, warmup_ratio=None, warmup_mode='sequential'):
        warmup_iters = int(warmup_iters or 0)
        if warmup_iters < 0:
            raise ConfigError(f'lr_scheduler.warmup_iters: must be >= 0, got {warmup_iters}')
        if warmup_iters >= iters:
            raise ConfigError(f'lr_scheduler.warmup_iters: {warmup_iters} must be smaller than iters ({iters})')
        if warmup_mode not in WARMUP_MODES:
            raise ConfigError(f'lr_scheduler.warmup_mode: expected one of {", ".join(WARMUP_MODES)}, '
                              f'got {warmup_mode!r}')
        if warmup_start_lr is not None and warmup_ratio is not None:
            raise ConfigError('lr_scheduler.warmup_ratio: give warmup_start_lr or warmup_ratio, not both')
        if warmup_ratio is not None and warmup_ratio < 0:
            raise ConfigError(f'lr_scheduler.warmup_ratio: must be >= 0, got {warmup_ratio}')
        if warmup_start_lr is not None and warmup_start_lr < 0:
            raise ConfigError(f'lr_scheduler.warmup_start_lr: must be >= 0, got {warmup_start_lr}')
        self.iters = int(iters)
        self.warmup_iters = warmup_iters
        self.warmup_start_lr = warmup_start_lr
        self.warmup_ratio = warmup_ratio
        self.warmup_mode = warmup_mode

    @property
    def schedule_iters(self):
        """The length the wrapped schedule decays over."""
        if self.warmup_mode == 'sequential':
            return self.iters - self.warmup_iters
        return self.iters

    def wrap(self, schedule):
        if not self.warmup_iters:
            return schedule
        if self.warmup_ratio is not None:
            start = self.warmup_ratio * float(schedule.last_lr)
        else:
            start = float(self.warmup_start_lr or 0.0)
        return WarmupSchedule(schedule, self.warmup_iters, start, self.warmup_mode)


# -- every other paddle.optimizer.lr schedule, by its class name ----------------------------

_NOT_BY_NAME = {'LRScheduler', 'LambdaDecay', 'MultiplicativeDecay', 'ReduceOnPlateau', 'LinearWarmup'}
_PADDLE_BOOKKEEPING = ('last_epoch', 'verbose')


def _by_name(cls):
    """A factory with ``cls``'s signature minus its bookkeeping arguments (the trainer owns
    ``last_epoch``; ``verbose`` would print every iteration)."""
    sig = inspect.signature(cls.__init__)
    params = [p for name, p in sig.parameters.items() if name not in _PADDLE_BOOKKEEPING and name != 'self']

    def make(**kwargs):
        return cls(**kwargs)

    make.__signature__ = sig.replace(parameters=params)
    make.__name__ = make.__qualname__ = cls.__name__
    make.__doc__ = f'``paddle.optimizer.lr.{cls.__name__}`` (stepped per iteration).'
    return make


def _register_paddle_schedules():
    for name, cls in sorted(vars(paddle.optimizer.lr).items()):
        if (inspect.isclass(cls) and issubclass(cls, paddle.optimizer.lr.LRScheduler)
                and name not in _NOT_BY_NAME and name not in LR_SCHEDULERS):
            LR_SCHEDULERS.register(_by_name(cls), name=name)


_register_paddle_schedules()
