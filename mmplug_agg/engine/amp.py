"""Mixed-precision training on CPU-only hosts.

mmengine 0.10.7's ``AmpOptimWrapper`` refuses to start without a GPU (an
assertion in its ``__init__``), although ``torch.autocast('cpu')`` runs
bfloat16 on any recent CPU. :class:`CPUAmpOptimWrapper` is that wrapper for
CPUs: bfloat16 autocast around the forward and loss, and no loss scaling
(bfloat16 has float32's exponent range, so gradients do not underflow as in
float16; PyTorch's CPU ``GradScaler`` is used disabled, so checkpoints keep
the wrapper's state layout). ``tools/train.py --amp`` picks it when CUDA is
not available and mmengine's ``AmpOptimWrapper`` (float16 + dynamic loss
scaling) otherwise.

mmcv 2.1.0's CPU kernels of NMS, RoIAlign and (modulated) deformable
convolution accept float32 only ("expected scalar type Float but found
BFloat16", "deformable_im2col_cpu not implemented for 'BFloat16'"), so every
Faster R-CNN-like detector, SAC and DCN would fail under CPU autocast.
:func:`run_mmcv_cpu_ops_in_fp32` (applied when this module is imported, i.e.
by ``import mmplug_agg``) makes those ops compute in float32 under CPU
autocast (inputs cast up, outputs cast back to the feature map's dtype);
outside CPU autocast, and on CUDA (where mmcv's kernels take float16),
nothing changes.
"""
import functools
import importlib
from contextlib import contextmanager
from typing import Union

import torch
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS
from torch import nn


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward runs under CPU bfloat16 autocast.

    Args:
        dtype (str | torch.dtype): Autocast type; CPU autocast supports
            ``'bfloat16'`` only. Defaults to ``'bfloat16'``.
        loss_scale: Accepted for config compatibility with
            ``AmpOptimWrapper`` and ignored: bfloat16 needs no loss scaling.
        **kwargs: Arguments of ``OptimWrapper`` (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).

    Example:
        >>> optim_wrapper = dict(type='CPUAmpOptimWrapper',
        ...                      optimizer=dict(type='SGD', lr=0.02, momentum=0.9))
    """

    def __init__(self,
                 dtype: Union[str, torch.dtype] = 'bfloat16',
                 loss_scale: Union[str, float, dict, None] = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, None)
        if dtype != torch.bfloat16:
            raise ValueError(f"CPUAmpOptimWrapper: dtype must be 'bfloat16' (the only type CPU "
                             f'autocast supports), got {dtype!r}')
        self.cast_dtype = dtype
        # Disabled: scale() returns the loss, step() steps; kept for the state-dict layout.
        self.loss_scaler = torch.amp.GradScaler('cpu', enabled=False)

    def state_dict(self) -> dict:
        state_dict = super().state_dict()
        state_dict['loss_scaler'] = self.loss_scaler.state_dict()
        return state_dict

    def load_state_dict(self, state_dict: dict) -> None:
        # A checkpoint of a GPU AMP run carries the GradScaler's state: not used here.
        state_dict = dict(state_dict)
        state_dict.pop('loss_scaler', None)
        super().load_state_dict(state_dict)

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield


# mmcv.ops module -> its autograd Functions whose CPU kernels are float32-only.
FP32_ONLY_MMCV_CPU_OPS = {
    'nms': ('NMSop', 'SoftNMSop'),
    'roi_align': ('RoIAlignFunction', ),
    'deform_conv': ('DeformConv2dFunction', ),
    'modulated_deform_conv': ('ModulatedDeformConv2dFunction', ),
}


def _is_low_precision_cpu(value) -> bool:
    return (isinstance(value, torch.Tensor) and value.device.type == 'cpu'
            and value.dtype in (torch.bfloat16, torch.float16))


def _to_fp32(values: tuple) -> tuple:
    return tuple(v.float() if _is_low_precision_cpu(v) else v for v in values)


def _fp32_forward(forward):
    """``forward(ctx, ...)`` that, under CPU autocast, computes in float32.

    Its floating-point outputs take the dtype of the first low-precision
    input (the feature map), as the op would return on CUDA with float16, so
    callers that write them into a buffer of that dtype keep working.
    """

    @functools.wraps(forward)
    def wrapped(ctx, *args, **kwargs):
        ctx.mmplug_agg_cast_dtype = None
        if not torch.is_autocast_enabled('cpu'):
            return forward(ctx, *args, **kwargs)
        low = [a.dtype for a in args if _is_low_precision_cpu(a)]
        with torch.autocast('cpu', enabled=False):
            outputs = forward(ctx, *_to_fp32(args), **kwargs)
        if not low:
            return outputs
        ctx.mmplug_agg_cast_dtype = low[0]
        if isinstance(outputs, torch.Tensor):
            return outputs.to(low[0]) if outputs.is_floating_point() else outputs
        return type(outputs)(o.to(low[0]) if isinstance(o, torch.Tensor)
                             and o.is_floating_point() else o for o in outputs)

    return wrapped


def _fp32_backward(backward):
    """``backward(ctx, *grads)`` taking float32 gradients when the forward was cast."""

    @functools.wraps(backward)
    def wrapped(ctx, *grads):
        if getattr(ctx, 'mmplug_agg_cast_dtype', None) is None:
            return backward(ctx, *grads)
        with torch.autocast('cpu', enabled=False):
            return backward(ctx, *_to_fp32(grads))

    return wrapped


def run_mmcv_cpu_ops_in_fp32() -> None:
    """Make float32-only mmcv CPU ops compute in float32 under CPU autocast.

    Wraps each autograd Function's ``forward`` and ``backward`` (the class
    attributes, so names bound to ``Function.apply`` at import, such as
    ``mmcv.ops.deform_conv2d`` used by SAC, are covered). Idempotent; an op
    missing from the installed mmcv is skipped.
    """
    for module_name, function_names in FP32_ONLY_MMCV_CPU_OPS.items():
        try:
            module = importlib.import_module(f'mmcv.ops.{module_name}')
        except ImportError:
            continue
        for name in function_names:
            function = getattr(module, name, None)
            if function is None or getattr(function, '_mmplug_agg_fp32_on_cpu', False):
                continue
            function.forward = staticmethod(_fp32_forward(function.forward))
            function.backward = staticmethod(_fp32_backward(function.backward))
            function._mmplug_agg_fp32_on_cpu = True


run_mmcv_cpu_ops_in_fp32()
