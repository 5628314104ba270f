"""Run one TIPC chain: train -> eval -> export -> inference, as ``test_train_inference_python.sh``.

    python test_tipc/chain.py test_tipc/configs/fast_scnn/train_infer_python.txt lite_train_lite_infer

The config is PaddleSeg's ``key:value`` text (see test_tipc/README.md). A value may depend on the
mode: ``lite_train_lite_infer=20|whole_infer=null``; ``a|b`` lists alternatives that the
inference step loops over (``--enable_mkldnn:True|False``). Every step appends one line to
``test_tipc/output/<model_name>/<mode>/results_python.log``:

    Run successfully with command - <command>!
    Run failed with command - <command>!

and writes its own output to a ``<step>.log`` beside it. The exit code is the number of
failed steps (0: the whole chain works). Only the standard library is used, so the chain
tests the tools as a user runs them, each in its own process.
"""
import os
import shlex
import subprocess
import sys
import time

MODES = ('lite_train_lite_infer', 'whole_infer')
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_config(path):
    """``{section: {key: value}}`` from the ``key:value`` lines; sections are the
    ``=====train_params=====`` rulers (``--batch_size`` means training in one section and
    inference in another, as in PaddleSeg)."""
    if not os.path.isfile(path):
        raise SystemExit(f'error: TIPC config {path!r} does not exist')
    sections = {'train_params': {}}
    current = sections['train_params']
    with open(path, encoding='utf-8') as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if line.startswith('==='):
                current = sections.setdefault(line.strip('='), {})
                continue
            if not line or line.startswith('##'):
                continue
            if ':' not in line:
                raise SystemExit(f'error: {path}:{n}: expected key:value, got {line!r}')
            key, value = line.split(':', 1)
            if key != 'null':
                current[key.strip()] = value.strip()
    return sections


def for_mode(value, mode):
    """``lite_train_lite_infer=20|whole_infer=null`` -> the value for ``mode``."""
    if '=' in value and any(part.split('=', 1)[0] in MODES for part in value.split('|')):
        for part in value.split('|'):
            k, _, v = part.partition('=')
            if k == mode:
                return v
        return 'null'
    return value


def choices(value, mode):
    return [v for v in for_mode(value, mode).split('|') if v and v != 'null'] or ['null']


def is_null(value):
    return value in (None, '', 'null', 'None')


class Chain:
    def __init__(self, config_path, mode):
        if mode not in MODES:
            raise SystemExit(f'error: MODE must be one of {", ".join(MODES)}, got {mode!r}')
        self.cfg = parse_config(config_path)
        self.mode = mode
        self.model = self.get('model_name')
        self.python = self.get('python', 'python')
        if self.python == 'python':
            self.python = sys.executable
        self.out = os.path.join(REPO, 'test_tipc', 'output', self.model, mode)
        os.makedirs(self.out, exist_ok=True)
        self.log = os.path.join(self.out, 'results_python.log')
        open(self.log, 'w').close()
        self.failed = 0

    def raw(self, key, section=None):
        for name in ([section] if section else self.cfg):
            if key in self.cfg.get(name, {}):
                return self.cfg[name][key]
        return None

    def get(self, key, default=None, section=None):
        v = self.raw(key, section)
        return default if v is None else for_mode(v, self.mode)

    def run(self, step, args):
        """Run one command; log it as PaddleSeg's ``status_check`` does."""
        cmd = [self.python] + args
        text = ' '.join(shlex.quote(a) for a in cmd)
        t0 = time.time()
        with open(os.path.join(self.out, f'{step}.log'), 'w', encoding='utf-8') as f:
            f.write(text + '\n')
            f.flush()
            rc = subprocess.call(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        status = 'Run successfully' if rc == 0 else 'Run failed'
        with open(self.log, 'a', encoding='utf-8') as f:
            f.write(f'{status} with command - {text}!\n')
        print(f'{status} ({time.time() - t0:.1f}s) with command - {text}!', flush=True)
        self.failed += rc != 0
        return rc == 0

    def script(self, key):
        """``tools/x.py --a b`` from a config line, as a list of arguments."""
        return shlex.split(self.get(key))

    # -- the steps -----------------------------------------------------------------------
    def train(self):
        save_dir = os.path.join(self.out, 'norm_train')
        args = self.script('norm_train') + ['--save_dir', save_dir]
        for key in ('--iters', '--batch_size'):
            v = self.get(key, section='train_params')
            if not is_null(v):
                args += [key, v]
        ok = self.run('train', args)
        return ok, os.path.join(save_dir, self.get('train_model_name', 'best_model/model.pdparams'))

    def evaluate(self, model_path):
        line = self.get('eval')
        if is_null(line):
            return True
        return self.run('eval', shlex.split(line) + ['--model_path', model_path])

    def export(self, key, model_path, step='export'):
        save_dir = os.path.join(self.out, step)
        args = self.script(key) + ['--save_dir', save_dir]
        if not is_null(model_path):
            args += ['--model_path', model_path]
        ok = self.run(step, args)
        return ok, os.path.join(save_dir, 'deploy.yaml')

    def infer(self, deploy_yaml):
        sec = 'infer_params'
        script = self.get('inference', section=sec)
        image_path = self.get('--image_path', section=sec)
        extra = shlex.split(self.get('infer_extra', '', section=sec) or '')
        opt = lambda key, default: choices(self.raw(key, sec) or default, self.mode)  # noqa: E731
        for device in opt('--device', 'cpu'):
            if device != 'cpu':
                continue  # no GPU here: TensorRT / GPU lines are for machines that have one
            for mkldnn in opt('--enable_mkldnn', 'True'):
                for threads in opt('--cpu_threads', '1'):
                    for bs in opt('--batch_size', '1'):
                        tag = f'infer_cpu_mkldnn_{mkldnn}_threads_{threads}_bs_{bs}'
                        args = [script, '--config', deploy_yaml, '--image_path', image_path, '--device', 'cpu',
                                '--enable_mkldnn', mkldnn, '--cpu_threads', threads, '--batch_size', bs,
                                '--precision', 'fp32', '--save_dir', os.path.join(self.out, tag)]
                        if self.get('--benchmark', 'False', section=sec) == 'True':
                            args += ['--benchmark', 'True', '--json', os.path.join(self.out, tag + '.json')]
                        self.run(tag, args + extra)

    def infer_int8(self, deploy_yaml):
        """The post-training int8 model (tools/quant.py) on each ``--int8_backend``."""
        sec = 'infer_params'
        script = self.get('inference', section=sec)
        extra = shlex.split(self.get('infer_extra', '', section=sec) or '')
        for backend in choices(self.raw('--int8_backend', sec) or 'onnxruntime', self.mode):
            tag = f'infer_cpu_int8_{backend}'
            args = [script, '--config', deploy_yaml, '--image_path', self.get('--image_path', section=sec),
                    '--device', 'cpu', '--backend', backend, '--precision', 'int8', '--cpu_threads', '2',
                    '--batch_size', '1', '--save_dir', os.path.join(self.out, tag)]
            if self.get('--benchmark', 'False', section=sec) == 'True':
                args += ['--benchmark', 'True', '--json', os.path.join(self.out, tag + '.json')]
            self.run(tag, args + extra)

    def __call__(self):
        if self.mode == 'lite_train_lite_infer':
            ok, weights = self.train()
            if ok:
                self.evaluate(weights)
            ok, deploy_yaml = self.export('norm_export', weights)
            if ok:
                self.infer(deploy_yaml)
            # int8: quant_export (tools/quant.py) calibrates the trained weights on the demo training images
            if self.get('infer_quant', 'False', section='infer_params') == 'True' and not is_null(self.get('quant_export')):
                ok, quant_yaml = self.export('quant_export', weights, step='quant_export')
                if ok:
                    self.infer_int8(quant_yaml)
        else:  # whole_infer: no training; export the given weights (or the initialization)
            weights = self.get('infer_model')
            ok, deploy_yaml = self.export('infer_export', None if is_null(weights) else weights)
            if ok:
                self.infer(deploy_yaml)
        print(f'{self.model} {self.mode}: {self.failed} failed step(s); log {os.path.relpath(self.log, REPO)}')
        return self.failed


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        raise SystemExit('usage: test_train_inference_python.sh CONFIG_TXT MODE '
                         f'(MODE: {" | ".join(MODES)})')
    return min(Chain(argv[0], argv[1])(), 125)


if __name__ == '__main__':
    sys.exit(main())
