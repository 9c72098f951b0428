"""HRNetV2 representation head for semantic segmentation.

Every branch of a multi-resolution backbone is resized bilinearly to the exact
size of the first (highest-resolution) branch, the branches are concatenated and
a conv-norm-act block (1x1 by default), dropout and a 1x1 classifier follow
(Wang et al., "Deep High-Resolution Representation Learning for Visual
Recognition", HRNetV2). ``mode='v1'`` keeps only the first branch (HRNetV1), for
ablations.

It computes what mmseg expresses as ``FCNHead(input_transform='resize_concat',
kernel_size=1, num_convs=1, concat_input=False)``, with the same parameter
names (``convs.0.*``, ``conv_seg.*``), so checkpoints of mmseg's FCN-HRNet
configs load into it unchanged.
"""
from typing import List, Optional, Sequence, Union

import torch.nn as nn
from mmcv.cnn import ConvModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from torch import Tensor

from mmplug_agg.models.necks.hrnetv2p_neck import (can_project_first, check_branches,
                                                   check_channel_list, resize_concat_conv)
from mmplug_agg.registry import register_seg_module

MODES = ('v1', 'v2')
# FCNHead arguments that a config inheriting mmseg's FCN-HRNet head would carry over.
_FCN_ONLY_ARGS = ('input_transform', 'num_convs', 'concat_input', 'dilation')


@register_seg_module
class HRNetV2Head(BaseDecodeHead):
    """Resize-concatenate head of HRNetV2 (``v2``) or first-branch head (``v1``).

    Args:
        in_channels (list[int] | int): Channels of the branches, highest
            resolution first (HRNetV2-W18: ``[18, 36, 72, 144]``). In ``v1``
            mode an int or a list whose first entry is used.
        channels (int, optional): Channels of the conv block. Defaults to the
            sum of the used branches' channels (HRNetV2 keeps the width).
        mode (str): ``'v2'`` uses every branch, ``'v1'`` only the first.
        in_index (list[int] | int, optional): Which backbone outputs are the
            branches; defaults to ``0 .. len(in_channels) - 1`` (``0`` in v1).
        kernel_size (int): Kernel size of the conv block, 1 (HRNetV2) or odd.
        project_first (bool): With a plain 1x1 conv, apply each branch's slice
            of it at the branch's own resolution and resize the projections
            (same result, less work at full resolution). False resizes and
            concatenates first, as FCNHead does.
        **kwargs: Arguments of mmseg's ``BaseDecodeHead`` (``num_classes``,
            ``dropout_ratio``, ``norm_cfg``, ``align_corners``, losses...),
            except ``input_transform``: the head resizes and concatenates itself.
    """

    def __init__(self,
                 in_channels: Union[int, Sequence[int]],
                 channels: Optional[int] = None,
                 *,
                 mode: str = 'v2',
                 in_index: Union[int, Sequence[int], None] = None,
                 kernel_size: int = 1,
                 project_first: bool = True,
                 **kwargs):
        name = type(self).__name__
        carried = [key for key in _FCN_ONLY_ARGS if key in kwargs]
        if carried:
            raise ValueError(
                f'{name}: {carried} are FCNHead arguments; this head resizes and concatenates '
                "the branches itself. Replace an inherited FCNHead with "
                "decode_head=dict(_delete_=True, type='HRNetV2Head', ...)")
        if mode not in MODES:
            raise ValueError(f"{name}: mode must be 'v2' (all branches) or 'v1' (highest "
                             f'resolution branch only), got {mode!r}')
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f'{name}: kernel_size must be a positive odd int, '
                             f'got {kernel_size!r}')
        branch_channels, branch_index = self._select_branches(name, mode, in_channels, in_index)
        if channels is None:
            channels = sum(branch_channels)
        self.mode = mode
        self.kernel_size = kernel_size
        super().__init__(branch_channels, channels, in_index=branch_index, **kwargs)
        # Same layout as FCNHead(num_convs=1), so its checkpoints load.
        self.convs = nn.Sequential(
            ConvModule(sum(self.in_channels),
                       self.channels,
                       kernel_size=kernel_size,
                       padding=kernel_size // 2,
                       conv_cfg=self.conv_cfg,
                       norm_cfg=self.norm_cfg,
                       act_cfg=self.act_cfg))
        self.project_first = bool(project_first) and can_project_first(self.convs[0])

    @staticmethod
    def _select_branches(name: str, mode: str, in_channels, in_index):
        """(channels, indices) of the branches the head reads, both lists."""
        if mode == 'v1':
            if isinstance(in_channels, int) and not isinstance(in_channels, bool):
                in_channels = [in_channels]
            channels = check_channel_list(in_channels, name)[:1]
            if in_index is None:
                in_index = 0
            index = in_index[0] if isinstance(in_index, (list, tuple)) and in_index else in_index
            if not isinstance(index, int) or isinstance(index, bool):
                raise ValueError(f'{name}: in_index must be an int or a list of ints, '
                                 f'got {in_index!r}')
            return channels, [index]
        if not isinstance(in_channels, (list, tuple)):
            raise ValueError(f"{name}: in mode 'v2' in_channels must list the channels of "
                             f'every branch, got {in_channels!r}')
        channels = check_channel_list(in_channels, name)
        if in_index is None:
            in_index = list(range(len(channels)))
        if (not isinstance(in_index, (list, tuple)) or len(in_index) != len(channels)
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in in_index)):
            raise ValueError(f'{name}: in_index must list one backbone output per entry of '
                             f'in_channels={channels}, got {in_index!r}')
        return channels, list(in_index)

    def _init_inputs(self, in_channels, in_index, input_transform):
        # Checked in __init__; the base class would assert a different contract.
        self.in_channels = list(in_channels)
        self.in_index = list(in_index)
        self.input_transform = None

    def extra_repr(self) -> str:
        return (f'mode={self.mode}, in_index={self.in_index}, '
                f'project_first={self.project_first}, align_corners={self.align_corners}')

    def _transform_inputs(self, inputs: Sequence[Tensor]) -> List[Tensor]:
        """The selected branches, checked against ``in_channels`` and for size order."""
        name = type(self).__name__
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f'{name}: inputs must be the list of backbone outputs, '
                             f'got {type(inputs).__name__}')
        count = len(inputs)
        if any(not -count <= i < count for i in self.in_index):
            raise ValueError(f'{name}: in_index={self.in_index} but the backbone gave '
                             f'{count} inputs')
        branches = [inputs[i] for i in self.in_index]
        check_branches(branches, self.in_channels, name, indices=self.in_index)
        return branches

    def _forward_feature(self, inputs: Sequence[Tensor]) -> Tensor:
        """The fused representation before the classifier, at branch 0's size."""
        branches = self._transform_inputs(inputs)
        return resize_concat_conv(branches,
                                  self.convs[0],
                                  align_corners=self.align_corners,
                                  project_first=self.project_first)

    def forward(self, inputs: Sequence[Tensor]) -> Tensor:
        return self.cls_seg(self._forward_feature(inputs))
