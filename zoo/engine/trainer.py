"""Iteration-based training: one loop for single-process and ``paddle.distributed.launch`` runs.

Checkpoints (``save_dir/iter_N/``) hold ``model.pdparams``, ``model.pdopt`` (optimizer and
LR scheduler) and ``train_state.pdstates`` (iteration, best mIoU). Each is written into a
hidden temporary folder that is renamed into place when complete, so an interrupted save
never replaces or corrupts the previous checkpoint. ``best_model/`` is replaced the same way.

Reproducibility: data order and augmentation are functions of (seed, iteration) (see
``sampler.py`` and ``datasets/base.py``) and the global Paddle RNG (dropout) is reseeded
from (seed, iteration) at every step, so ``--resume_model`` continues exactly where the
interrupted run stopped.
"""
import json
import math
import os
import shutil
import time
from collections import deque

import numpy as np
import paddle
import paddle.distributed as dist

from ..builder import build_dataset, build_losses, build_lr_scheduler, build_model, build_optimizer, validate_config
from ..utils.checkpoint import atomic_replace_dir, load_file, load_state_dict_checked
from ..utils.errors import CheckpointError, ZooError
from ..utils.logger import logger
from .sampler import TrainBatchSampler

TRAIN_OPTION_KEYS = ('log_iters', 'save_interval', 'keep_checkpoint_max', 'eval_aug', 'num_vis')


class TrainingDiverged(ZooError):
    """The loss became NaN or infinite."""


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
                 precision='fp32', amp_level='O1', device=None, eval_interval=None):
        self.cfg = validate_config(cfg, for_training=True)
        opts = dict(self.cfg.dic.get('train') or {})
        unknown = set(opts) - set(TRAIN_OPTION_KEYS)
        if unknown:
            raise self.cfg.error(f'train.{sorted(unknown)[0]}', f'unknown key (accepted: {", ".join(TRAIN_OPTION_KEYS)})')
        self.save_dir = save_dir
        self.do_eval = do_eval
        self.use_vdl = use_vdl
        self.iters = self.cfg.iters
        self.log_iters = int(log_iters or opts.get('log_iters', 10))
        self.save_interval = int(save_interval or opts.get('save_interval', 1000))
        self.eval_interval = int(eval_interval or self.save_interval)
        self.keep_checkpoint_max = int(keep_checkpoint_max or opts.get('keep_checkpoint_max', 5))
        self.eval_aug = bool(opts.get('eval_aug', False))
        self.num_vis = int(opts.get('num_vis', 3))
        self.num_workers = num_workers
        self.resume_model = resume_model
        self.seed = seed
        if precision not in ('fp32', 'fp16', 'bf16'):
            raise ZooError(f'--precision must be fp32, fp16 or bf16, got {precision!r}')
        self.precision = precision
        self.amp_level = amp_level
        if device:
            paddle.set_device(device)
        self.world_size = dist.get_world_size()
        self.rank = dist.get_rank()

    # -- building --------------------------------------------------------------------
    def _build(self):
        paddle.seed(self.seed)
        np.random.seed(self.seed)
        if self.world_size > 1:
            dist.init_parallel_env()
        self.train_dataset = build_dataset(self.cfg, 'train')
        self.val_dataset = build_dataset(self.cfg, 'val') if self.do_eval else None
        self.model = build_model(self.cfg)
        self.losses = build_losses(self.cfg)
        on_gpu = paddle.device.get_device().startswith('gpu')
        if self.world_size > 1 and on_gpu:
            self.model = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        elif self.world_size > 1:
            logger.info('SyncBN is GPU-only in Paddle; CPU ranks keep per-rank BatchNorm statistics')
        self.scheduler = build_lr_scheduler(self.cfg)
        self.optimizer = build_optimizer(self.cfg, self.model, self.scheduler)
        if self.precision != 'fp32' and self.amp_level == 'O2':
            dtype = 'float16' if self.precision == 'fp16' else 'bfloat16'
            self.model, self.optimizer = paddle.amp.decorate(models=self.model, optimizers=self.optimizer,
                                                             level='O2', dtype=dtype)
        # fp16 needs loss scaling against underflow; bf16 has fp32's exponent range and does not
        self.scaler = paddle.amp.GradScaler(init_loss_scaling=2.0 ** 16) if self.precision == 'fp16' else None
        self.ddp_model = paddle.DataParallel(self.model) if self.world_size > 1 else self.model

    # -- checkpoints -----------------------------------------------------------------
    def save_checkpoint(self, iteration, best_miou, folder_name=None):
        """Write ``iter_N/`` atomically (temp folder + rename); prune old ones."""
        name = folder_name or f'iter_{iteration}'
        final = os.path.join(self.save_dir, name)
        tmp = os.path.join(self.save_dir, f'.{name}.tmp')
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        os.makedirs(tmp)
        try:
            paddle.save(self.model.state_dict(), os.path.join(tmp, 'model.pdparams'))
            opt_state = _structured_optimizer_state(self.optimizer.state_dict(), self.model)
            opt_state['LR_Scheduler'] = self.scheduler.state_dict()
            paddle.save(opt_state, os.path.join(tmp, 'model.pdopt'))
            paddle.save({'iteration': iteration, 'best_miou': best_miou, 'seed': self.seed,
                         'scaler': self.scaler.state_dict() if self.scaler else None},
                        os.path.join(tmp, 'train_state.pdstates'))
            atomic_replace_dir(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def _prune(self, kept):
        while len(kept) > self.keep_checkpoint_max:
            old = kept.popleft()
            shutil.rmtree(old, ignore_errors=True)

    def _save_best(self, iteration, miou):
        tmp = os.path.join(self.save_dir, '.best_model.tmp')
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
        os.makedirs(tmp)
        try:
            paddle.save(self.model.state_dict(), os.path.join(tmp, 'model.pdparams'))
            with open(os.path.join(tmp, 'score.json'), 'w') as f:
                json.dump({'iteration': iteration, 'mIoU': miou}, f)
            atomic_replace_dir(tmp, os.path.join(self.save_dir, 'best_model'))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def resume(self, path):
        if not os.path.isdir(path):
            raise CheckpointError(f'--resume_model {path!r} is not a checkpoint folder (expected iter_N/ '
                                  'with model.pdparams, model.pdopt, train_state.pdstates)')
        params = load_file(os.path.join(path, 'model.pdparams'), 'model')
        opt = _structured_optimizer_state(load_file(os.path.join(path, 'model.pdopt'), 'optimizer'), self.model,
                                          to_structured=False)
        state = load_file(os.path.join(path, 'train_state.pdstates'), 'train state')
        load_state_dict_checked(self.model, params, os.path.join(path, 'model.pdparams'), strict=True)
        sched = opt.get('LR_Scheduler')
        self.optimizer.set_state_dict(opt)  # restores the scheduler too (from 'LR_Scheduler')
        if sched is not None:
            self.scheduler.set_state_dict(sched)
        if self.scaler is not None and state.get('scaler'):
            self.scaler.load_state_dict(state['scaler'])
        it = int(state['iteration'])
        logger.info(f'resumed from {path} at iteration {it}')
        return it, float(state.get('best_miou', -1.0))

    # -- evaluation ------------------------------------------------------------------
    def _test_kwargs(self):
        from .inference import parse_test_config
        kw = parse_test_config(self.cfg.test_config, align_corners=getattr(self.model, 'align_corners', False))
        if not self.eval_aug:  # in-training eval: no multi-scale/flip (slide kept), like mmseg's val
            kw['scales'] = (1.0,)
            kw['flip_horizontal'] = False
            kw['flip_vertical'] = False
        return kw

    def evaluate(self, iteration, writer):
        from .evaluator import evaluate
        res = evaluate(self.model, self.val_dataset, self._test_kwargs(), num_workers=self.num_workers,
                       print_detail=True, vdl_writer=writer, iteration=iteration, num_vis=self.num_vis)
        self.model.train()
        return res

    # -- the loop --------------------------------------------------------------------
    def _loader(self, start_iter):
        sampler = TrainBatchSampler(len(self.train_dataset), self.cfg.batch_size, self.iters, start_iter,
                                    shuffle=True, seed=self.seed, rank=self.rank, world_size=self.world_size)
        return paddle.io.DataLoader(self.train_dataset, batch_sampler=sampler, num_workers=self.num_workers,
                                    return_list=True, persistent_workers=False,
                                    use_shared_memory=self.num_workers > 0)

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
        self._build()
        start_iter, best_miou = 0, -1.0
        if self.resume_model:
            start_iter, best_miou = self.resume(self.resume_model)
        os.makedirs(self.save_dir, exist_ok=True)
        writer = None
        if self.use_vdl and self.rank == 0:
            from visualdl import LogWriter
            writer = LogWriter(logdir=self.save_dir)
        kept = deque(sorted((os.path.join(self.save_dir, d) for d in os.listdir(self.save_dir)
                             if d.startswith('iter_') and d[5:].isdigit()), key=lambda p: int(p.rsplit('_', 1)[1])))
        loader = self._loader(start_iter)
        self.model.train()
        hook = getattr(self.model, 'train_step_hook', None)
        if hook is not None and start_iter:  # a resumed run: the model learns where it is (MCIBI's memory loss)
            hook(labels=None, lr=self.optimizer.get_lr(), iteration=start_iter)
        iteration = start_iter
        stats = {'loss': 0.0, 'n': 0, 'reader': 0.0, 'batch': 0.0, 'parts': None}
        recent_batch = deque(maxlen=50)
        last_good = kept[-1] if kept else None
        t_end = time.perf_counter()
        logger.info(f'training {type(self.model).__name__} for {self.iters} iterations from {start_iter} '
                    f'(batch {self.cfg.batch_size} x {self.world_size} rank(s), {len(self.train_dataset)} images)')
        try:
            for img, label in loader:
                reader_cost = time.perf_counter() - t_end
                iteration += 1
                paddle.seed(self.seed * 100003 + iteration)  # dropout etc.: a function of the iteration
                total, parts = self._forward_loss(img, label)
                loss_value = float(total)
                if not math.isfinite(loss_value):
                    where = f'; the last good checkpoint is {last_good}' if last_good else ' (no checkpoint saved yet)'
                    raise TrainingDiverged(f'loss is {loss_value} at iteration {iteration}: training stopped{where}')
                if self.scaler is not None:
                    self.scaler.scale(total).backward()
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                else:
                    total.backward()
                    self.optimizer.step()
                self.optimizer.clear_grad()
                lr = self.optimizer.get_lr()
                self.scheduler.step()
                if hook is not None:
                    hook(labels=label, lr=lr, iteration=iteration)
                batch_cost = time.perf_counter() - t_end
                recent_batch.append(batch_cost)
                stats['loss'] += loss_value
                stats['n'] += 1
                stats['reader'] += reader_cost
                stats['batch'] += batch_cost
                pv = [float(p) for p in parts]
                stats['parts'] = pv if stats['parts'] is None else [a + b for a, b in zip(stats['parts'], pv)]
                if iteration % self.log_iters == 0 or iteration == self.iters:
                    self._log(iteration, stats, lr, recent_batch, writer)
                    stats = {'loss': 0.0, 'n': 0, 'reader': 0.0, 'batch': 0.0, 'parts': None}
                if iteration % self.save_interval == 0 or iteration == self.iters:
                    if self.do_eval and (iteration % self.eval_interval == 0 or iteration == self.iters):
                        res = self.evaluate(iteration, writer)
                        if self.rank == 0 and res['mIoU'] > best_miou:
                            best_miou = res['mIoU']
                            self._save_best(iteration, best_miou)
                        logger.info(f'[EVAL] iter {iteration}: mIoU {res["mIoU"]:.4f}; best mIoU {best_miou:.4f}')
                    if self.rank == 0:
                        last_good = self.save_checkpoint(iteration, best_miou)
                        if last_good not in kept:
                            kept.append(last_good)
                        self._prune(kept)
                t_end = time.perf_counter()
        finally:
            if writer is not None:
                writer.close()
        return {'iteration': iteration, 'best_miou': best_miou}

    def _log(self, iteration, stats, lr, recent_batch, writer):
        n = max(stats['n'], 1)
        avg_loss = stats['loss'] / n
        parts = [p / n for p in stats['parts']]
        names = head_names(self.model, len(parts))
        batch_cost = stats['batch'] / n
        reader_cost = stats['reader'] / n
        ips = self.cfg.batch_size * self.world_size / max(batch_cost, 1e-9)
        eta = float(np.median(recent_batch)) * (self.iters - iteration)
        epoch = iteration * self.cfg.batch_size * self.world_size // max(len(self.train_dataset), 1) + 1
        heads = ', '.join(f'{k}={v:.4f}' for k, v in zip(names, parts))
        logger.info(f'[TRAIN] epoch {epoch}, iter {iteration}/{self.iters} {_bar(iteration / self.iters)} '
                    f'loss {avg_loss:.4f} ({heads}), lr {lr:.6f}, batch_cost {batch_cost:.4f}s, '
                    f'reader_cost {reader_cost:.5f}s, ips {ips:.2f} samples/s | ETA {_fmt_eta(eta)}')
        if writer is not None:
            writer.add_scalar('Train/loss', avg_loss, iteration)
            for k, v in zip(names, parts):
                writer.add_scalar(f'Train/loss_{k}', v, iteration)
            writer.add_scalar('Train/lr', lr, iteration)
            writer.add_scalar('Train/batch_cost', batch_cost, iteration)
            writer.add_scalar('Train/reader_cost', reader_cost, iteration)
            writer.add_scalar('Train/ips', ips, iteration)


def train(config, **kwargs):
    """``zoo.engine.trainer.train('configs/x.yml', save_dir='output', iters=...)``."""
    return Trainer(config, **kwargs).train()
