"""Fold weight standardisation (ConvWS / ConvAWS / SAC) into plain convolution weights.

mmcv's ``ConvWS2d``, ``ConvAWS2d`` and ``SAConv2d`` (DetectoRS' switchable atrous
convolution, which mmdet's ``DetectoRS_ResNet`` builds) standardise their weights
on every call. For deployment the weights are fixed, so the standardised weights
are computed once and the layers become ``nn.Conv2d`` (TensorRT, for one, rejects
convolution weights that are computed at run time). Outputs are unchanged: the
folded layers run the same convolutions on the same weight tensors.

What folds:

* ``ConvWS2d`` and ``ConvAWS2d`` -> one ``nn.Conv2d`` each;
* ``SAConv2d(use_deform=False)`` -> :class:`FoldedSAConv2d`: its pre- and
  post-context 1x1 convs, its switch, and two plain convs (the short-range one
  and the atrous one with 3x padding and dilation, whose weight is the
  standardised weight plus ``weight_diff``);
* ``SAConv2d(use_deform=True)`` cannot: its deformable convolution has no op in
  the standard ONNX opsets torch exports to, so :func:`fold_weight_standardisation`
  raises :class:`NotFoldable` naming the layer.
"""
from typing import List

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.conv_ws import ConvAWS2d, ConvWS2d
from mmcv.ops.saconv import SAConv2d
from torch import Tensor, nn


class NotFoldable(ValueError):
    """A layer whose run-time weights cannot become plain convolutions."""


def _plain_conv(like: nn.Conv2d, weight: Tensor, bias, padding=None, dilation=None) -> nn.Conv2d:
    conv = nn.Conv2d(like.in_channels, like.out_channels, like.kernel_size, stride=like.stride,
                     padding=like.padding if padding is None else padding,
                     dilation=like.dilation if dilation is None else dilation,
                     groups=like.groups, bias=bias is not None,
                     padding_mode=like.padding_mode).to(weight.device, weight.dtype)
    conv.weight.data.copy_(weight)
    if bias is not None:
        conv.bias.data.copy_(bias)
    return conv


def _ws_weight(conv: ConvWS2d) -> Tensor:
    """The weight mmcv's ``conv_ws_2d`` standardises on every call."""
    weight = conv.weight
    c_out = weight.size(0)
    flat = weight.view(c_out, -1)
    mean = flat.mean(dim=1, keepdim=True).view(c_out, 1, 1, 1)
    std = flat.std(dim=1, keepdim=True).view(c_out, 1, 1, 1)
    return (weight - mean) / (std + conv.eps)


class FoldedSAConv2d(nn.Module):
    """``SAConv2d(use_deform=False)`` with its two standardised weights computed once.

    The forward is mmcv's: pre-context (global pool -> 1x1, added), switch
    (reflect-padded 5x5 average -> 1x1 conv), ``switch * conv_s(x) + (1 - switch)
    * conv_l(x)``, post-context. Like mmcv's, it adds no bias to the convs.
    """

    def __init__(self, sac: SAConv2d) -> None:
        super().__init__()
        if sac.use_deform:
            raise NotFoldable('SAConv2d(use_deform=True) has a deformable convolution, which '
                              'standard ONNX does not have')
        with torch.no_grad():
            weight = sac._get_weight(sac.weight)
            self.conv_s = _plain_conv(sac, weight, None)
            self.conv_l = _plain_conv(sac, weight + sac.weight_diff, None,
                                      padding=tuple(3 * p for p in sac.padding),
                                      dilation=tuple(3 * d for d in sac.dilation))
        self.pre_context = sac.pre_context
        self.switch = sac.switch
        self.post_context = sac.post_context

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.pre_context(F.adaptive_avg_pool2d(x, output_size=1)).expand_as(x)
        local = F.avg_pool2d(F.pad(x, pad=(2, 2, 2, 2), mode='reflect'), kernel_size=5, stride=1)
        switch = self.switch(local)
        out = switch * self.conv_s(x) + (1 - switch) * self.conv_l(x)
        return out + self.post_context(F.adaptive_avg_pool2d(out, output_size=1)).expand_as(out)


def _folded(module: nn.Module) -> nn.Module:
    if isinstance(module, SAConv2d):
        return FoldedSAConv2d(module)
    with torch.no_grad():
        if isinstance(module, ConvAWS2d):
            return _plain_conv(module, module._get_weight(module.weight), module.bias)
        return _plain_conv(module, _ws_weight(module), module.bias)


def check_foldable(model: nn.Module) -> None:
    """Raise :class:`NotFoldable` if ``model`` has deformable SAC layers (named)."""
    deformable = [name for name, module in model.named_modules()
                  if isinstance(module, SAConv2d) and module.use_deform]
    if deformable:
        raise NotFoldable(f'{len(deformable)} SAConv2d layers use deformable convolution '
                          f'(use_deform=True, first: {deformable[0]}), which standard ONNX '
                          'has no op for; build the model with use_deform=False to export it')


def fold_weight_standardisation(model: nn.Module) -> List[str]:
    """Replace every ConvWS2d / ConvAWS2d / SAConv2d of ``model`` in place.

    Returns:
        The names of the replaced modules.

    Raises:
        NotFoldable: A deformable SAC layer (named in the message); nothing of
            the model is changed then.
    """
    check_foldable(model)
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, (ConvWS2d, ConvAWS2d))]
    for name, module in targets:
        parent_name, _, child = name.rpartition('.')
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _folded(module))
    return [name for name, _ in targets]


def calibrate_random_weight_standardisation(model: nn.Module) -> int:
    """Make random ConvAWS weights compute at the scale loaded weights would.

    ``ConvAWS2d`` standardises each filter and rescales it by ``weight_gamma`` /
    ``weight_beta``, buffers that loading a checkpoint sets to the loaded filter's
    standard deviation and mean. A model built without a checkpoint keeps
    gamma = 1, beta = 0: every filter then has unit variance whatever its fan-in,
    and with BN in eval mode the activations of a deep ConvAWS backbone overflow,
    so no output could be compared. Setting the buffers as loading would makes
    each conv compute with its random weights as they are. Only for random
    weights (an export without a checkpoint); returns the number of layers set.
    """
    count = 0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ConvAWS2d):
                weight = module.weight.flatten(1)
                module.weight_beta.copy_(weight.mean(dim=1).view_as(module.weight_beta))
                module.weight_gamma.copy_(
                    torch.sqrt(weight.var(dim=1) + 1e-5).view_as(module.weight_gamma))
                count += 1
    return count
