"""Record what Paddle checkpoints pickle, in the PaddleSeg reference environment.

Run with the PaddleSeg 2.8 scratch environment (paddlepaddle 3.2.2, paddleseg 2.8.0, numpy < 2):

    /work/scratch/envs/paddleseg/bin/python tests/manifests/paddle_checkpoint_formats.py

For each way a Paddle / PaddleSeg checkpoint is written (PaddleSeg's own training loop saves
``model.state_dict()`` and ``optimizer.state_dict()`` with ``paddle.save``; ``protocol=2`` is the
``fluid.save_dygraph`` format of PaddleSeg 2.0-era releases; ``paddle.static.save`` the static-graph
one) it writes a tiny file, lists the Python globals its pickle names (``pickletools``), and
stores the file itself (base64, a few hundred bytes) with the values it must load to, so that
``tests/test_checkpoint.py`` loads files written by numpy 1.x without that environment.
"""
import base64
import io
import json
import os
import pickletools
import sys

import numpy as np
import paddle

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'paddle_checkpoint_formats.json')


def pickle_globals(data):
    """Module.name of every GLOBAL / STACK_GLOBAL / INST in a pickle."""
    found, strings, memo = set(), [], {}
    for op, arg, _ in pickletools.genops(data):
        if op.name in ('GLOBAL', 'INST'):
            found.add(arg.replace(' ', '.'))
        elif op.name in ('SHORT_BINUNICODE', 'BINUNICODE', 'UNICODE', 'BINUNICODE8'):
            strings.append(arg)
        elif op.name == 'MEMOIZE':
            memo[len(memo)] = strings[-1] if strings else None
        elif op.name in ('BINGET', 'LONG_BINGET', 'GET'):
            strings.append(memo.get(arg))
        elif op.name == 'STACK_GLOBAL':
            found.add(f'{strings[-2]}.{strings[-1]}')
    return sorted(found)


def saved(obj, **kw):
    buf = io.BytesIO()
    paddle.save(obj, buf, **kw)
    return buf.getvalue()


def plain(obj):
    """JSON-able expected values: arrays as {dtype, shape, values}."""
    if isinstance(obj, paddle.Tensor):
        obj = obj.numpy()
    if isinstance(obj, np.ndarray):
        return {'dtype': str(obj.dtype), 'shape': list(obj.shape), 'values': obj.ravel().tolist()}
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def main():
    paddle.seed(0)
    paddle.set_device('cpu')
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 2, 1), paddle.nn.BatchNorm2D(2))
    sched = paddle.optimizer.lr.PolynomialDecay(0.01, 100, power=0.9)
    opt = paddle.optimizer.Momentum(sched, momentum=0.9, parameters=model.parameters(), weight_decay=4e-5)
    model(paddle.randn([2, 3, 4, 4])).mean().backward()
    opt.step()
    sched.step()
    formats = {}
    sd = model.state_dict()
    formats['paddleseg_model_pdparams'] = (saved(sd), sd)
    osd = opt.state_dict()
    formats['paddleseg_optimizer_pdopt'] = (saved(osd), osd)
    formats['fluid_save_dygraph_protocol2'] = (saved(sd, protocol=2), sd)
    nested = {'model': sd, 'epoch': 3, 'best': np.float32(0.5)}
    formats['nested_tensors'] = (saved(nested), nested)
    formats['bare_tensor'] = (saved(sd['0.weight']), sd['0.weight'])
    paddle.enable_static()
    main_prog, startup = paddle.static.Program(), paddle.static.Program()
    with paddle.static.program_guard(main_prog, startup):
        x = paddle.static.data('x', [None, 3], 'float32')
        paddle.static.nn.fc(x, 2)
    exe = paddle.static.Executor(paddle.CPUPlace())
    exe.run(startup)
    prefix = os.path.join(os.environ.get('TMPDIR', '/tmp'), 'zoo_static_save')
    paddle.static.save(main_prog, prefix)
    with open(prefix + '.pdparams', 'rb') as f:
        static_bytes = f.read()
    static_vals = {v.name: np.array(paddle.static.global_scope().find_var(v.name).get_tensor())
                   for v in main_prog.list_vars() if v.persistable and v.name != 'feed' and v.name != 'fetch'}
    formats['paddle_static_save'] = (static_bytes, static_vals)
    dense = paddle.static.global_scope().find_var(sorted(static_vals)[0]).get_tensor()
    try:
        formats['dense_tensor'] = (saved(dense), np.array(dense))
    except Exception as e:  # noqa: BLE001
        print('DenseTensor cannot be saved here:', type(e).__name__, str(e).splitlines()[0])
    paddle.disable_static()
    out = {'how': ' '.join([os.path.basename(sys.executable)] + sys.argv),
           'versions': {'paddle': paddle.__version__, 'numpy': np.__version__,
                        'python': sys.version.split()[0]},
           'formats': {}}
    try:
        import paddleseg
        out['versions']['paddleseg'] = paddleseg.__version__
    except ImportError:
        pass
    for name, (data, value) in formats.items():
        out['formats'][name] = {'globals': pickle_globals(data), 'protocol': data[1] if data[:1] == b'\x80' else 0,
                                'bytes': len(data), 'file_base64': base64.b64encode(data).decode(),
                                'expected': plain(value)}
        print(f'{name:32s} protocol {out["formats"][name]["protocol"]} {len(data):6d} bytes  '
              f'{", ".join(out["formats"][name]["globals"])}')
    with open(OUT, 'w') as f:
        json.dump(out, f, indent=1)
    print('wrote', OUT)


if __name__ == '__main__':
    main()
