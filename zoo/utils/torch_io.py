"""Reading PyTorch checkpoints (optional: needs ``pip install -e .[convert]``)."""
import numpy as np

from .errors import CheckpointError


def load_torch_state_dict(path):
    """Return ``{name: numpy array}`` from a ``.pth`` file; unwraps state_dict/model keys."""
    try:
        import torch
    except ImportError:
        raise CheckpointError(f'{path} is a PyTorch checkpoint: install torch to read it '
                              '(pip install -e ".[convert]")') from None
    try:
        obj = torch.load(path, map_location='cpu', weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f'checkpoint file {path!r} does not exist') from None
    except Exception as e:
        raise CheckpointError(f'{path}: cannot read PyTorch checkpoint ({type(e).__name__}: {e})') from None
    for key in ('state_dict', 'model'):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise CheckpointError(f'{path}: expected a state dict, got {type(obj).__name__}')
    out = {}
    for k, v in obj.items():
        if hasattr(v, 'detach'):
            v = v.detach().cpu()
            out[k] = v.float().numpy() if v.is_floating_point() else v.numpy()
        else:
            out[k] = np.asarray(v)
    return out
