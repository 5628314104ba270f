"""Iteration-based training: one loop for single-process and ``paddle.distributed.launch`` runs.

Checkpoints (``save_dir/iter_N/``) hold ``model.pdparams``, ``model.pdopt`` (optimizer and
LR scheduler) and ``train_state.pdstates`` (iteration, best mIoU). Each is written into a
hidden temporary folder that is renamed into place when complete (``utils/atomic.py``), so an
interrupted save never replaces or corrupts the previous checkpoint; old ones are pruned by a
rename to a hidden trash name first. ``best_model/`` is replaced the same way. Nothing
non-finite is ever written (``guard.py``), one run at a time uses a save_dir
(``utils/lock.py``), and the whole config is checked before the first iteration (``startup.py``).

Reproducibility: data order and augmentation are functions of (seed, iteration) (see
``sampler.py`` and ``datasets/base.py``) and the global Paddle RNG (dropout) is reseeded
from (seed, iteration) at every step, so ``--resume_model`` continues exactly where the
interrupted run stopped.
"""
import json
import os
import time
from collections import deque

import numpy as np
import paddle
import paddle.distributed as dist

from ..builder import as_config, build_dataset, build_losses, build_lr_scheduler, build_model, build_optimizer
from ..utils.atomic import atomic_dir, clean_leftovers, remove_dir
from ..utils.checkpoint import load_file, load_state_dict_checked, require_finite
from ..utils.cli import set_device
from ..utils.errors import CheckpointError, ConfigError, ZooError
from ..utils.loader_guard import shutdown_loader, worker_init_fn
from ..utils.lock import SaveDirLock
from ..utils.logger import logger, stop_log_to_file
from ..utils.quiet import init_parallel_env
from .guard import DivergenceGuard, TrainingDiverged  # noqa: F401  (TrainingDiverged: re-exported)
from .progress import StepTimer, fmt_duration
from .run_files import broadcast_buffers, open_run_files
from .sampler import TrainBatchSampler
from .startup import check_batch_fits, check_positive, pick, read_train_state, validate_run_config


def compute_loss(logits_list, label, losses):
    """Weighted sum of one loss per model output; returns (total, [per-head losses])."""
    types, coef = losses['types'], losses['coef']
    if len(logits_list) != len(types):
        raise ZooError(f'the model returned {len(logits_list)} output(s) in training but loss.coef has '
                       f'{len(coef)} coefficient(s); give one coefficient per output')
    parts = [fn(logits, label) for fn, logits in zip(types, logits_list)]
    total = sum(c * p for c, p in zip(coef, parts))
    return total, parts


def _structured_optimizer_state(state, model, to_structured=True):
    """Key optimizer accumulators by structured parameter names (``head.conv.weight``) instead
    of Paddle's generated ones (``conv2d_8.w_0``), which depend on how many layers the process
    created before; so a checkpoint resumes whatever was built first."""
    pairs = [(p.name, k) for k, p in model.named_parameters()]
    src_to_dst = dict(pairs) if to_structured else {k: n for n, k in pairs}
    # longest names first so that 'conv2d_1.w_0' does not claim 'conv2d_11.w_0_velocity_0'
    ordered = sorted(src_to_dst, key=len, reverse=True)
    sep = '_' if to_structured else '::'
    out = {}
    for key, value in state.items():
        if isinstance(value, dict) and key == 'master_weights':
            out[key] = {src_to_dst.get(n, n): v for n, v in value.items()}
            continue
        new = key
        for name in ordered:
            if key.startswith(name + sep):
                rest = key[len(name) + len(sep):]
                new = f'{src_to_dst[name]}::{rest}' if to_structured else f'{src_to_dst[name]}_{rest}'
                break
        out[new] = value
    return out


def head_names(model, n):
    names = getattr(model, 'output_names', None)
    if names and len(names) == n:
        return list(names)
    return ['main'] + [f'aux{i}' for i in range(1, n)]


def _fmt_eta(seconds):
    seconds = int(max(seconds, 0))
    return f'{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def _bar(frac, width=20):
    n = int(round(frac * width))
    return '[' + '#' * n + '-' * (width - n) + f'] {frac * 100:5.1f}%'


class Trainer:
    """Train the model of a config.

    Args mirror ``tools/train.py`` flags; ``train:`` in the YAML sets defaults for
    ``log_iters``, ``save_interval``, ``keep_checkpoint_max``, ``eval_aug`` and ``num_vis``.
    """

    def __init__(self, cfg, save_dir='output', do_eval=False, use_vdl=False, save_interval=None,
                 log_iters=None, keep_checkpoint_max=None, num_workers=0, resume_model=None, seed=0,
                 precision='fp32', amp_level='O1', device=None, eval_interval=None, use_ema=False, ema_decay=0.999,
                 skip_data_check=False):
        self.cfg = cfg = as_config(cfg)
        validate_run_config(cfg)
        opts = dict(cfg.dic.get('train') or {})
        self.save_dir = save_dir
        self.do_eval = do_eval
        self.use_vdl = use_vdl
        self.iters = cfg.iters
        # a flag given on the command line wins, 0 included (it is then refused, not ignored)
        self.log_iters = check_positive('--log_iters', pick(log_iters, opts.get('log_iters'), 10))
        self.save_interval = check_positive('--save_interval', pick(save_interval, opts.get('save_interval'), 1000))
        self.eval_interval = check_positive('--eval_interval',
                                            pick(eval_interval, opts.get('eval_interval'), self.save_interval))
        self.keep_checkpoint_max = check_positive('--keep_checkpoint_max',
                                                  pick(keep_checkpoint_max, opts.get('keep_checkpoint_max'), 5))
        self.eval_aug = bool(opts.get('eval_aug', False))
        self.num_vis = int(opts.get('num_vis', 3))
        self.num_workers = check_positive('--num_workers', num_workers, minimum=0)
        self.resume_model = resume_model
        self.seed = check_positive('--seed', seed, minimum=0)
        if self.seed >= 2 ** 32:
            raise ConfigError(f'--seed: expected an integer below 2**32, got {seed}')
        if precision not in ('fp32', 'fp16', 'bf16'):
            raise ZooError(f'--precision must be fp32, fp16 or bf16, got {precision!r}')
        self.precision = precision
        self.amp_level = amp_level
        self.skip_data_check = skip_data_check
        self.use_ema, self.ema_decay, self.ema = use_ema, ema_decay, None
        if device:
            set_device(device)
        self.world_size = dist.get_world_size()
        self.rank = dist.get_rank()
        self.guard = DivergenceGuard(self.world_size, self._checkpoints)

    # -- building --------------------------------------------------------------------
    def _build(self):
        paddle.seed(self.seed)
        np.random.seed(self.seed)
        if self.world_size > 1:
            init_parallel_env()  # without Paddle's FLAGS table unless --verbose
        self.train_dataset = build_dataset(self.cfg, 'train')
        check_batch_fits(self.cfg, len(self.train_dataset), self.world_size)
        self.val_dataset = build_dataset(self.cfg, 'val') if self.do_eval else None
        self.model = build_model(self.cfg)
        self.losses = build_losses(self.cfg)
        on_gpu = paddle.device.get_device().startswith('gpu')
        if self.world_size > 1 and on_gpu:
            self.model = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        elif self.world_size > 1:
            logger.info('SyncBN is GPU-only in Paddle: CPU ranks keep per-rank BatchNorm statistics, and take '
                        "rank 0's before each evaluation and checkpoint (zoo/engine/run_files.py)")
        self.scheduler = build_lr_scheduler(self.cfg)
        self.optimizer = build_optimizer(self.cfg, self.model, self.scheduler)
        if self.precision != 'fp32' and self.amp_level == 'O2':
            dtype = 'float16' if self.precision == 'fp16' else 'bfloat16'
            self.model, self.optimizer = paddle.amp.decorate(models=self.model, optimizers=self.optimizer,
                                                             level='O2', dtype=dtype)
        # fp16 needs loss scaling against underflow; bf16 has fp32's exponent range and does not
        self.scaler = paddle.amp.GradScaler(init_loss_scaling=2.0 ** 16) if self.precision == 'fp16' else None
        self.ddp_model = paddle.DataParallel(self.model) if self.world_size > 1 else self.model
        if self.use_ema:
            from .ema import ModelEMA
            self.ema = ModelEMA(self.model, self.ema_decay)

    # -- checkpoints -----------------------------------------------------------------
    def _optimizer_state(self):
        opt_state = _structured_optimizer_state(self.optimizer.state_dict(), self.model)
        opt_state['LR_Scheduler'] = self.scheduler.state_dict()
        return opt_state

    def _kept_note(self):
        kept = self._checkpoints()
        return f'the previous checkpoint {kept[-1]}' if kept else None

    def save_checkpoint(self, iteration, best_miou, folder_name=None):
        """Write ``iter_N/`` atomically (temp folder + rename); refuses a non-finite state."""
        name = folder_name or f'iter_{iteration}'
        final = os.path.join(self.save_dir, name)
        states = {'model': self.model.state_dict(), 'optimizer': self._optimizer_state()}
        if self.ema is not None:
            states['EMA'] = self.ema.state_dict()
        self.guard.check_state(states, iteration, collective=False)
        with atomic_dir(final, 'checkpoint', kept=self._kept_note()) as tmp:
            paddle.save(states['model'], os.path.join(tmp, 'model.pdparams'))
            paddle.save(states['optimizer'], os.path.join(tmp, 'model.pdopt'))
            if self.ema is not None:
                paddle.save(states['EMA'], os.path.join(tmp, 'ema.pdparams'))
            paddle.save({'iteration': iteration, 'best_miou': best_miou, 'seed': self.seed,
                         'scaler': self.scaler.state_dict() if self.scaler else None},
                        os.path.join(tmp, 'train_state.pdstates'))
        return final

    def _checkpoints(self):
        """This save_dir's ``iter_N`` folders, oldest first."""
        if not os.path.isdir(self.save_dir):
            return []
        found = [d for d in os.listdir(self.save_dir) if d.startswith('iter_') and d[5:].isdigit()]
        return [os.path.join(self.save_dir, d) for d in sorted(found, key=lambda d: int(d[5:]))]

    def _prune(self, kept):
        while len(kept) > self.keep_checkpoint_max:
            remove_dir(kept.popleft())  # renamed to a hidden trash name first: never half-deleted

    def _save_best(self, iteration, miou, weights='model'):
        model_state = self.model.state_dict()  # the EMA weights when they are swapped in
        self.guard.check_state({'model': model_state}, iteration, collective=False)
        best = os.path.join(self.save_dir, 'best_model')
        with atomic_dir(best, 'best model', kept=best if os.path.isdir(best) else None) as tmp:
            paddle.save(model_state, os.path.join(tmp, 'model.pdparams'))
            with open(os.path.join(tmp, 'score.json'), 'w') as f:
                json.dump({'iteration': iteration, 'mIoU': miou, 'weights': weights}, f)

    def resume(self, path):
        """Load ``iter_N/`` (weights, optimizer + LR schedule, iteration); every file is read
        through the safe loader and must be finite. Works across a change of world size."""
        if not os.path.isdir(path):
            raise CheckpointError(f'--resume_model {path!r} is not a checkpoint folder (expected iter_N/ '
                                  'with model.pdparams, model.pdopt, train_state.pdstates)')
        state_path = os.path.join(path, 'train_state.pdstates')
        state = load_file(state_path, 'train state')
        it, best = read_train_state(state, state_path, self.iters)
        params = load_file(os.path.join(path, 'model.pdparams'), 'model')
        opt_path = os.path.join(path, 'model.pdopt')
        opt = load_file(opt_path, 'optimizer')
        if not isinstance(opt, dict):
            raise CheckpointError(f'{opt_path}: not an optimizer state (got {type(opt).__name__})')
        require_finite(opt, opt_path)
        opt = _structured_optimizer_state(opt, self.model, to_structured=False)
        load_state_dict_checked(self.model, params, os.path.join(path, 'model.pdparams'), strict=True)
        sched = opt.get('LR_Scheduler')
        self.optimizer.set_state_dict(opt)  # restores the scheduler too (from 'LR_Scheduler')
        if sched is not None:
            self.scheduler.set_state_dict(sched)
        ema_path = os.path.join(path, 'ema.pdparams')
        if self.ema is not None and os.path.isfile(ema_path):
            ema_state = load_file(ema_path, 'EMA weights')
            require_finite(ema_state, ema_path)
            self.ema.set_state_dict(ema_state, ema_path)
        elif self.ema is not None:  # a checkpoint written without --use_ema: average from its weights on
            from .ema import ModelEMA
            self.ema = ModelEMA(self.model, self.ema.decay)
            logger.info(f'{path} has no ema.pdparams: the EMA starts from its weights')
        if self.scaler is not None and state.get('scaler'):
            self.scaler.load_state_dict(state['scaler'])
        logger.info(f'resumed from {path} at iteration {it}')
        return it, best

    # -- evaluation ------------------------------------------------------------------
    def _test_kwargs(self):
        from .inference import parse_test_config
        kw = parse_test_config(self.cfg.test_config, align_corners=getattr(self.model, 'align_corners', False))
        if not self.eval_aug:  # in-training eval: no multi-scale/flip (slide kept), like mmseg's val
            kw['scales'] = (1.0,)
            kw['flip_horizontal'] = False
            kw['flip_vertical'] = False
        return kw

    def evaluate(self, iteration, writer, ema=False):
        """Evaluate (the EMA weights with ``ema``) into ``save_dir/eval/iter_N[_ema]/``."""
        from .evaluator import evaluate
        name = f'iter_{iteration}' + ('_ema' if ema else '')
        main_loss = self.losses['types'][0]
        identity = {'model': {'type': type(self.model).__name__, 'config': self.cfg.path, 'iteration': iteration,
                              'weights': 'EMA of the trained weights' if ema else 'trained weights',
                              'save_dir': self.save_dir},
                    'protocol': {'during_training': True, 'test_time_augmentation': self.eval_aug}}
        res = evaluate(self.model, self.val_dataset, self._test_kwargs(), num_workers=self.num_workers,
                       print_detail=True, vdl_writer=writer, iteration=iteration, num_vis=self.num_vis,
                       loss_fn=main_loss, save_dir=os.path.join(self.save_dir, 'eval', name), identity=identity,
                       vdl_prefix='Evaluate_EMA' if ema else 'Evaluate',
                       title=f'iter {iteration}' + (' (EMA weights)' if ema else ''))
        self.model.train()
        return res

    def _evaluate_and_keep_best(self, iteration, writer, best_miou):
        """Evaluate the weights (and their EMA); ``best_model/`` takes whichever beats the best."""
        runs = [('model', self.evaluate(iteration, writer))]
        if self.ema is not None:
            self.ema.broadcast_non_trained(self.model)
            with self.ema.swapped_in(self.model):
                runs.append(('ema', self.evaluate(iteration, writer, ema=True)))
        seconds = sum(r['seconds'] for _, r in runs)
        weights, res = max(runs, key=lambda r: r[1]['mIoU'])
        if res['mIoU'] > best_miou:
            best_miou = res['mIoU']
            if self.rank == 0:
                if weights == 'ema':
                    with self.ema.swapped_in(self.model):
                        self._save_best(iteration, best_miou, weights)
                else:
                    self._save_best(iteration, best_miou, weights)
            self.best_iter = iteration
        logger.info(f'[EVAL] iter {iteration}: best mIoU {100 * best_miou:.2f} at iter {self.best_iter}'
                    + (' (EMA weights)' if weights == 'ema' and self.best_iter == iteration else '')
                    + f'; evaluation took {fmt_duration(seconds)}')
        return best_miou, seconds

    # -- the loop --------------------------------------------------------------------
    def _loader(self, start_iter):
        sampler = TrainBatchSampler(len(self.train_dataset), self.cfg.batch_size, self.iters, start_iter,
                                    shuffle=True, seed=self.seed, rank=self.rank, world_size=self.world_size)
        return paddle.io.DataLoader(self.train_dataset, batch_sampler=sampler, num_workers=self.num_workers,
                                    return_list=True, persistent_workers=False,
                                    use_shared_memory=self.num_workers > 0, worker_init_fn=worker_init_fn)

    def _forward_loss(self, img, label):
        if self.precision == 'fp32':
            logits = self.ddp_model(img)
            return compute_loss(logits, label, self.losses)
        dtype = 'float16' if self.precision == 'fp16' else 'bfloat16'
        with paddle.amp.auto_cast(enable=True, level=self.amp_level, dtype=dtype):
            logits = self.ddp_model(img)
        logits = [x.astype('float32') for x in logits]
        return compute_loss(logits, label, self.losses)

    def train(self):
        """Train. Rank 0 holds the save_dir lock (``utils/lock.py``) throughout; ``save_dir/train.log``
        gets every logged line of the run, ``config.yml`` the config."""
        lock = SaveDirLock(self.save_dir).acquire() if self.rank == 0 else None
        try:
            if lock is not None:
                clean_leftovers(self.save_dir)  # temp/trash folders of a killed run
            log_file = open_run_files(self.save_dir, self.cfg, self.rank)
            try:
                return self._train()
            finally:
                stop_log_to_file(log_file)
        finally:
            if lock is not None:
                lock.release()

    def _train(self):
        self._build()
        if not self.skip_data_check:  # every sample of both datasets, before iteration 1
            from ..datasets.scan import preflight_check
            val = self.val_dataset or (build_dataset(self.cfg, 'val') if 'val_dataset' in self.cfg.dic else None)
            preflight_check({'train': self.train_dataset, 'val': val}, num_workers=self.num_workers,
                            rank=self.rank, world_size=self.world_size)
        start_iter, best_miou = 0, -1.0
        if self.resume_model:
            start_iter, best_miou = self.resume(self.resume_model)
        os.makedirs(self.save_dir, exist_ok=True)
        writer = None
        if self.use_vdl and self.rank == 0:
            from visualdl import LogWriter
            writer = LogWriter(logdir=self.save_dir)
        kept = deque(self._checkpoints())
        loader = iter(self._loader(start_iter))
        self.model.train()
        hook = getattr(self.model, 'train_step_hook', None)
        if hook is not None and start_iter:  # a resumed run: the model learns where it is (MCIBI's memory loss)
            hook(labels=None, lr=self.optimizer.get_lr(), iteration=start_iter)
        iteration = start_iter
        stats = {'loss': 0.0, 'n': 0, 'reader': 0.0, 'batch': 0.0, 'parts': None}
        timer = StepTimer()
        self.best_iter = self._best_iteration_on_disk() if best_miou >= 0 else None
        t_start = t_end = time.perf_counter()
        logger.info(f'training {type(self.model).__name__} for {self.iters} iterations from {start_iter} '
                    f'(batch {self.cfg.batch_size} x {self.world_size} rank(s), {len(self.train_dataset)} images)')
        try:
            for img, label in loader:
                reader_cost = time.perf_counter() - t_end
                iteration += 1
                paddle.seed(self.seed * 100003 + iteration)  # dropout etc.: a function of the iteration
                total, parts = self._forward_loss(img, label)
                loss_value = float(total)
                self.guard.check_loss(loss_value, iteration)
                if self.scaler is not None:
                    self.scaler.scale(total).backward()
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    total.backward()
                    if iteration % self.log_iters == 0:  # cheap early warning of divergence
                        self.guard.check_gradients(self.model.parameters(), iteration)
                    self.optimizer.step()
                self.optimizer.clear_grad()
                if self.ema is not None:
                    self.ema.update(self.model)
                lr = self.optimizer.get_lr()
                self.scheduler.step()
                if hook is not None:
                    hook(labels=label, lr=lr, iteration=iteration)
                batch_cost = time.perf_counter() - t_end
                timer.step(batch_cost)
                stats['loss'] += loss_value
                stats['n'] += 1
                stats['reader'] += reader_cost
                stats['batch'] += batch_cost
                pv = [float(p) for p in parts]
                stats['parts'] = pv if stats['parts'] is None else [a + b for a, b in zip(stats['parts'], pv)]
                if iteration % self.log_iters == 0 or iteration == self.iters:
                    self._log(iteration, stats, lr, timer, writer)
                    stats = {'loss': 0.0, 'n': 0, 'reader': 0.0, 'batch': 0.0, 'parts': None}
                do_save = iteration % self.save_interval == 0 or iteration == self.iters
                do_eval = self.do_eval and (iteration % self.eval_interval == 0 or iteration == self.iters)
                if do_save or do_eval:
                    broadcast_buffers(self.model)  # evaluate and save the state every rank holds
                    self.guard.check_state({'model': self.model.state_dict(), 'optimizer': self._optimizer_state()},
                                           iteration)  # on every rank, so that all stop together
                if do_eval:
                    best_miou, seconds = self._evaluate_and_keep_best(iteration, writer, best_miou)
                    timer.evaluation(seconds)
                if do_save:
                    if self.rank == 0:
                        saved = self.save_checkpoint(iteration, best_miou)
                        if saved not in kept:
                            kept.append(saved)
                        self._prune(kept)
                t_end = time.perf_counter()
            total = time.perf_counter() - t_start
            logger.info(f'training done: iterations {start_iter + 1}-{iteration} in {fmt_duration(total)} '
                        f'({fmt_duration(timer.eval_total)} of it in {timer.eval_count} evaluation(s))'
                        + (f'; best mIoU {100 * best_miou:.2f} at iter {self.best_iter}' if best_miou >= 0 else ''))
        finally:
            shutdown_loader(loader)  # end the workers now, also on an error or a signal
            if writer is not None:
                writer.close()
        return {'iteration': iteration, 'best_miou': best_miou}

    def _best_iteration_on_disk(self):
        """The iteration of ``best_model/`` (when resuming), from its score.json."""
        try:
            with open(os.path.join(self.save_dir, 'best_model', 'score.json')) as f:
                return int(json.load(f)['iteration'])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _remaining_evals(self, iteration):
        if not self.do_eval:
            return 0
        n = self.iters // self.eval_interval - iteration // self.eval_interval
        return n + (1 if self.iters % self.eval_interval else 0)

    def _log(self, iteration, stats, lr, timer, writer):
        n = max(stats['n'], 1)
        avg_loss = stats['loss'] / n
        parts = [p / n for p in stats['parts']]
        names = head_names(self.model, len(parts))
        batch_cost = stats['batch'] / n
        reader_cost = stats['reader'] / n
        ips = self.cfg.batch_size * self.world_size / max(batch_cost, 1e-9)
        eta = timer.eta(self.iters - iteration, self._remaining_evals(iteration))
        epoch = iteration * self.cfg.batch_size * self.world_size // max(len(self.train_dataset), 1) + 1
        heads = ', '.join(f'{k}={v:.4f}' for k, v in zip(names, parts))
        logger.info(f'[TRAIN] epoch {epoch}, iter {iteration}/{self.iters} {_bar(iteration / self.iters)} '
                    f'loss {avg_loss:.4f} ({heads}), lr {lr:.6f}, batch_cost {batch_cost:.4f}s, '
                    f'reader_cost {reader_cost:.5f}s, ips {ips:.2f} samples/s | ETA {"--" if eta is None else _fmt_eta(eta)}')
        if writer is not None:
            writer.add_scalar('Train/loss', avg_loss, iteration)
            for k, v in zip(names, parts):
                writer.add_scalar(f'Train/loss_{k}', v, iteration)
            writer.add_scalar('Train/lr', lr, iteration)
            writer.add_scalar('Train/batch_cost', batch_cost, iteration)
            writer.add_scalar('Train/reader_cost', reader_cost, iteration)
            writer.add_scalar('Train/ips', ips, iteration)
