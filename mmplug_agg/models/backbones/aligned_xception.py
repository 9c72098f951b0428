"""Aligned Xception backbones (the modified Xception of DeepLab v3+, Chen et al., ECCV 2018).

DeepLab v3+ deepens Chollet's Xception (41, 65 or 71 layers), replaces every max-pool by
a strided depthwise-separable conv, so that any block can trade its stride for a
dilation, and adds BN after each depthwise conv. Every block is three separable convs
(depthwise 3x3 -> BN -> pointwise 1x1 -> BN) with a 1x1-conv, identity or no shortcut:

* entry, middle and the first exit block put a ReLU *before* each separable conv
  (none between the depthwise and the pointwise conv) and sum the shortcut without
  a ReLU after it, as TF DeepLab's ``xception_module`` with
  ``activation_fn_in_separable_conv=False``;
* the last exit block has no shortcut and a ReLU after both halves of each separable
  conv (``activation_fn_in_separable_conv=True``).

The variants differ only in the entry flow and the middle-flow length
(``XCEPTION_ARCHS``). Below output stride 32, the block that would exceed
``output_stride`` and all later ones run at stride 1 and dilate by the stride they
skipped, as TF DeepLab's ``stack_blocks_dense``.

The intermediate features are taken inside the strided blocks, after the second
separable conv: the decoder end points of TF DeepLab
(``entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise`` for the
stride-4 feature of Xception-65). TF takes them before the ReLU that opens the third
conv (``tap_before_relu=True``); timm's ``features_only`` takes them after it
(``tap_before_relu=False``).

Parameter names follow timm's ``xception_aligned`` where mmcv's modules allow;
``convert_xception_state_dict`` maps timm checkpoints (``timm://xception65.tf_in1k``,
the TF ImageNet weights, loads through :mod:`mmplug_agg.utils.checkpoint`).
"""
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import ConvModule, DepthwiseSeparableConvModule
from mmengine.model import BaseModule
from torch import Tensor

from mmplug_agg.registry import register_backbone

from .frozen_stages import FrozenStagesMixin

# Entry-flow blocks as (out_channels, stride); every entry block has a 1x1-conv
# shortcut. The middle flow repeats a 728-channel block with an identity shortcut.
XCEPTION_ARCHS: Dict[int, dict] = {
    41: dict(entry=((128, 2), (256, 2), (728, 2)), num_middle=8),
    65: dict(entry=((128, 2), (256, 2), (728, 2)), num_middle=16),
    71: dict(entry=((128, 2), (256, 1), (256, 2), (728, 1), (728, 2)), num_middle=16),
}
MIDDLE_CHANNELS = 728
# Exit flow, shared by all depths: (channels of the three separable convs, stride,
# shortcut, ReLU inside the separable convs instead of before them).
EXIT_FLOW = (((728, 1024, 1024), 2, 'conv', False),
             ((1536, 1536, 2048), 1, 'none', True))
STEM_CHANNELS = (32, 64)
OUTPUT_STRIDES = (8, 16, 32)
# out_indices 0-3 are the taps of the four strided blocks (nominal strides 2, 4, 8,
# 16), index 4 the last block's output.
NUM_OUTS = 5
FLOWS = ('stem', 'entry', 'middle', 'exit')
SHORTCUTS = ('conv', 'sum', 'none')


class XceptionBlock(BaseModule):
    """One Xception module: three separable convs plus a shortcut.

    Args:
        in_channels (int): Input channels.
        channels (Sequence[int]): Output channels of the three separable convs.
        stride (int): Stride of the third separable conv and of the 1x1 shortcut.
        dilation (int): Dilation of the three depthwise convs.
        shortcut (str): ``'conv'`` (1x1 conv + BN), ``'sum'`` (identity) or
            ``'none'``.
        relu_inside (bool): ReLU after the depthwise and the pointwise BN of each
            separable conv; False puts one ReLU before each separable conv instead.
        keep_tap (bool): Keep the input of the third separable conv intact (it is
            returned as a feature), so its leading ReLU is not in place.
        conv_cfg (dict, optional): Conv config.
        norm_cfg (dict): Norm config.
        act_cfg (dict): Activation config.
        init_cfg (dict | list[dict], optional): Initialization config.
    """

    def __init__(self,
                 in_channels: int,
                 channels: Sequence[int],
                 stride: int = 1,
                 dilation: int = 1,
                 shortcut: str = 'sum',
                 relu_inside: bool = False,
                 keep_tap: bool = False,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', eps=1e-3),
                 act_cfg: dict = dict(type='ReLU'),
                 init_cfg: Union[dict, List[dict], None] = None) -> None:
        super().__init__(init_cfg)
        if shortcut not in SHORTCUTS:
            raise ValueError(f'shortcut must be one of {SHORTCUTS}, got {shortcut!r}')
        if shortcut == 'sum' and (in_channels != channels[-1] or stride != 1):
            raise ValueError(f"shortcut='sum' needs in_channels == channels[-1] and stride 1, "
                             f'got {in_channels}, {channels[-1]} and {stride}')
        self.shortcut_type = shortcut
        self.shortcut = None
        if shortcut == 'conv':
            self.shortcut = ConvModule(in_channels, channels[-1], 1, stride=stride,
                                       conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=None)
        convs = []
        for i, out_channels in enumerate(channels):
            common = dict(stride=stride if i == 2 else 1, padding=dilation, dilation=dilation,
                          conv_cfg=conv_cfg, norm_cfg=norm_cfg)
            if relu_inside:
                conv = DepthwiseSeparableConvModule(in_channels, out_channels, 3,
                                                    act_cfg=act_cfg, **common)
            else:
                # The first ReLU must not overwrite the block input (the shortcut reads
                # it), nor the third the returned tap.
                inplace = not (i == 0 or (i == 2 and keep_tap))
                conv = DepthwiseSeparableConvModule(in_channels, out_channels, 3,
                                                    dw_act_cfg=act_cfg, pw_act_cfg=None,
                                                    order=('act', 'conv', 'norm'),
                                                    inplace=inplace, **common)
            convs.append(conv)
            in_channels = out_channels
        self.convs = nn.Sequential(*convs)

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        """Return the block output and the input of the third separable conv."""
        tap = self.convs[1](self.convs[0](x))
        out = self.convs[2](tap)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        elif self.shortcut_type == 'sum':
            out = out + x
        return out, tap


@register_backbone
class AlignedXception(FrozenStagesMixin, BaseModule):
    """Aligned Xception backbone of DeepLab v3+ for mmseg and mmdet.

    A stem of two 3x3 convs (32 channels at stride 2, then 64), the entry flow, the
    middle flow (8 or 16 identical 728-channel blocks) and the exit flow (a strided
    1024-channel block, then 1536-1536-2048 separable convs without shortcut).

    Args:
        depth (int): 41, 65 or 71 (``XCEPTION_ARCHS``).
        in_channels (int): Input image channels.
        output_stride (int): 8, 16 or 32. Below 32 the exit flow (and, for 8, the
            entry flow's last strided block and the middle flow) keeps the
            resolution and dilates instead.
        out_indices (Sequence[int]): Features to return, in 0-4: 0-3 are taken
            inside the four strided blocks (nominal strides 2, 4, 8, 16; 128, 256,
            728 and 1024 channels), 4 is the final 2048-channel output. The default
            (1, 4) gives DeepLab v3+'s decoder its stride-4 low-level feature first,
            as mmseg's ``DepthwiseSeparableASPPHead`` reads ``inputs[0]``.
        tap_before_relu (bool): Take features 0-3 after the BN of the second
            separable conv, before the ReLU that starts the third (TF DeepLab's
            decoder end points). False takes them after that ReLU (timm).
        widen_factor (float): Multiplies every width (rounded to a multiple of 8);
            1 is the paper's network, smaller values give cheap models for tests
            and CPU demos.
        frozen_stages (int): Freeze the stem (0), and the entry (1), middle (2) and
            exit (3) flows up to that number; -1 freezes nothing.
        conv_cfg (dict, optional): Conv config.
        norm_cfg (dict): Norm config. TF DeepLab uses BN with eps 1e-3.
        act_cfg (dict): Activation config.
        norm_eval (bool): Keep the norm layers in eval mode while training.
        with_cp (bool): Recompute each block in backward (saves memory).
        init_cfg (dict | list[dict], optional): Initialization; by default mmcv's
            ``ConvModule`` init (Kaiming-normal fan-out convs, unit norms).
            ``dict(type='Pretrained', checkpoint='timm://xception65.tf_in1k')``
            loads timm's (converted TF) ImageNet weights.

    Example:
        >>> import torch
        >>> from mmplug_agg.models.backbones import AlignedXception
        >>> model = AlignedXception(65, output_stride=16).eval()
        >>> for feat in model(torch.rand(1, 3, 333, 517)):
        ...     print(tuple(feat.shape))
        (1, 256, 84, 130)
        (1, 2048, 21, 33)
    """

    def __init__(self,
                 depth: int = 65,
                 in_channels: int = 3,
                 output_stride: int = 16,
                 out_indices: Sequence[int] = (1, 4),
                 tap_before_relu: bool = True,
                 widen_factor: float = 1.0,
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', eps=1e-3, requires_grad=True),
                 act_cfg: dict = dict(type='ReLU'),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Union[dict, List[dict], None] = None) -> None:
        super().__init__(init_cfg)
        if depth not in XCEPTION_ARCHS:
            raise ValueError(f'depth must be one of {sorted(XCEPTION_ARCHS)}, got {depth!r}')
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f'output_stride must be one of {list(OUTPUT_STRIDES)}, '
                             f'got {output_stride!r}')
        self.out_indices = self._check_out_indices(out_indices)
        if not isinstance(widen_factor, (int, float)) or widen_factor <= 0:
            raise ValueError(f'widen_factor must be a number > 0, got {widen_factor!r}')
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages < len(FLOWS):
            raise ValueError(f'frozen_stages must be in -1..{len(FLOWS) - 1} (-1 nothing, '
                             f'then {", ".join(FLOWS)}), got {frozen_stages!r}')
        self.depth = depth
        self.widen_factor = widen_factor
        self.output_stride = output_stride
        self.tap_before_relu = tap_before_relu
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp

        def width(channels: int) -> int:
            return max(8, int(channels * widen_factor + 4) // 8 * 8)

        layer_cfg = dict(conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg)
        stem_channels = [width(c) for c in STEM_CHANNELS]
        self.stem = nn.Sequential(
            ConvModule(in_channels, stem_channels[0], 3, stride=2, padding=1, **layer_cfg),
            ConvModule(stem_channels[0], stem_channels[1], 3, padding=1, **layer_cfg))

        arch = XCEPTION_ARCHS[depth]
        specs = [((c, c, c), s, 'conv', False) for c, s in arch['entry']]
        specs += [((MIDDLE_CHANNELS, ) * 3, 1, 'sum', False)] * arch['num_middle']
        specs += list(EXIT_FLOW)
        specs = [(tuple(width(c) for c in block_channels), *rest)
                 for block_channels, *rest in specs]
        num_entry = len(arch['entry'])
        self.flow_ends = (num_entry, num_entry + arch['num_middle'], len(specs))

        blocks, self.tap_blocks, self.tap_channels = [], [], []
        stride, dilation, channels = 2, 1, stem_channels[1]
        for i, (block_channels, block_stride, shortcut, relu_inside) in enumerate(specs):
            if block_stride > 1:
                self.tap_blocks.append(i)
                self.tap_channels.append(block_channels[1])
            block_dilation = dilation
            if block_stride > 1 and stride * block_stride > output_stride:
                dilation *= block_stride
                block_stride = 1
            stride *= block_stride
            blocks.append(
                XceptionBlock(channels, block_channels, block_stride, block_dilation, shortcut,
                              relu_inside, keep_tap=i in self.tap_blocks, **layer_cfg))
            channels = block_channels[-1]
        self.blocks = nn.Sequential(*blocks)
        self.final_channels = channels
        self._freeze_stages()

    @staticmethod
    def _check_out_indices(out_indices: Sequence[int]) -> Tuple[int, ...]:
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        out_indices = tuple(out_indices)
        if (not out_indices or len(set(out_indices)) != len(out_indices)
                or any(not isinstance(i, int) or not 0 <= i < NUM_OUTS for i in out_indices)):
            raise ValueError(f'out_indices must be distinct ints in 0-{NUM_OUTS - 1} (0-3: the '
                             f'strided blocks at nominal strides 2, 4, 8, 16; 4: the last '
                             f'block), got {out_indices}')
        return out_indices

    @property
    def out_channels(self) -> List[int]:
        """Channels of the returned features, for the head's ``in_channels``."""
        channels = self.tap_channels + [self.final_channels]
        return [channels[i] for i in self.out_indices]

    def _frozen_modules(self) -> List[nn.Module]:
        if self.frozen_stages < 0:
            return []
        modules = [self.stem]
        if self.frozen_stages > 0:
            modules += list(self.blocks[:self.flow_ends[self.frozen_stages - 1]])
        return modules

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        x = self.stem(x)
        # Stop after the last block that holds a requested feature.
        last = max(self.out_indices)
        last_block = len(self.blocks) - 1 if last == NUM_OUTS - 1 else self.tap_blocks[last]
        taps = []
        for i, block in enumerate(self.blocks[:last_block + 1]):
            # Non-reentrant checkpointing also works when x needs no gradient (frozen
            # flows before this block).
            if self.with_cp and torch.is_grad_enabled():
                x, tap = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x, tap = block(x)
            if i in self.tap_blocks:
                taps.append(tap if self.tap_before_relu else F.relu(tap))
        features = taps + [x]  # x is the final feature only when the exit flow ran
        return tuple(features[i] for i in self.out_indices)


_TIMM_FLAT_KEY = re.compile(r'^(stem|blocks)_(\d+)\.')
_TIMM_SEPARABLE_KEY = re.compile(
    r'^blocks\.(\d+)\.stack\.conv([123])\.(conv_dw|bn_dw|conv_pw|bn_pw)\.')
_SEPARABLE_PARTS = {'conv_dw': 'depthwise_conv.conv', 'bn_dw': 'depthwise_conv.bn',
                    'conv_pw': 'pointwise_conv.conv', 'bn_pw': 'pointwise_conv.bn'}
_CLASSIFIER_PREFIXES = ('head.', 'fc.')


def convert_xception_state_dict(
        state_dict: Dict[str, Tensor]) -> Tuple[Dict[str, Tensor], List[str]]:
    """Map a timm aligned-Xception state dict to :class:`AlignedXception`'s keys.

    Takes timm's ``xception41/65/71`` models (``stack.convN.conv_dw``...) and their
    ``features_only`` variants (``blocks_N``); the classifier is dropped. The stem and
    the shortcuts already have our names (``conv``/``bn``).

    Returns:
        tuple: The converted state dict and the list of dropped source keys.

    Raises:
        ValueError: For the pre-activation variants (``xception41p``/``65p``), whose
            layer order this backbone does not build.
    """
    converted, dropped = {}, []
    for key, value in state_dict.items():
        key = key[len('module.'):] if key.startswith('module.') else key
        if key.startswith(_CLASSIFIER_PREFIXES):
            dropped.append(key)
            continue
        key = _TIMM_FLAT_KEY.sub(r'\1.\2.', key)
        if re.match(r'^blocks\.\d+\.(norm|stack\.conv\d\.norm)\.', key):
            raise ValueError('pre-activation Xception checkpoints (timm xception41p/65p) are '
                             f'not supported by AlignedXception (key {key!r}); use '
                             'xception41, xception65 or xception71')
        match = _TIMM_SEPARABLE_KEY.match(key)
        if match:
            block, conv, part = match.groups()
            key = (f'blocks.{block}.convs.{int(conv) - 1}.{_SEPARABLE_PARTS[part]}.'
                   f'{key[match.end():]}')
        converted[key] = value
    return converted, dropped
