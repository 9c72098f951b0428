"""Run a backbone stage by stage, optionally adding a feedback map inside a stage.

Recursive feature pyramids (:class:`RecursiveFeaturePyramid`) re-run a backbone
with the previous pyramid added to the first residual block of some stages,
*before* that block's final ReLU. A backbone's own ``forward`` gives no way to
do that, so a small adapter per backbone family re-implements the walk through
the backbone from its submodules, in the order its ``forward`` uses them:

* ``stem(x)``: everything before stage 0;
* ``run_stage(i, x, feedback=None)``: stage ``i``; with ``feedback``, the first
  block computes its pre-activation (residual branch + shortcut) from its own
  submodules, adds ``feedback`` and applies its ReLU, and the remaining blocks
  run their usual forward;
* ``num_stages``, ``stage_channels``: the stages and their output widths;
* ``out_indices``: the stages whose outputs the backbone returns (sorted, as
  the backbone returns them), i.e. what a neck receives;
* ``feedback_stages``: the stages that have a residual block to take feedback.

Without feedback a runner computes exactly what the backbone's ``forward``
does (the tests check this for every family). The adapters hold a reference to
the backbone and own no parameters; frozen stages and ``norm_eval`` stay the
backbone's business (its ``train()`` sets them).

Supported families: mmdet's and mmseg's ``ResNet``, ``ResNetV1c``/``ResNetV1d``
and ``ResNeXt`` (``BasicBlock`` and ``Bottleneck`` blocks, plugins and
``with_cp`` included), and this package's :class:`DLA`. Subclasses with other
blocks (Res2Net, ResNeSt, RegNet, DetectoRS's SAC ResNet) and transformers
(Swin) are future work and are refused with a list of what is supported.
"""
import importlib
from typing import Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple, Type

import torch
import torch.utils.checkpoint as cp
from torch import Tensor, nn

from .dla import DLA, NUM_LEVELS, Tree, _ResidualBlock

FUTURE_WORK = 'Swin and Res2Net (and other backbones) are future work'


class StageRunner:
    """Base adapter: the protocol every backbone family implements.

    Args:
        backbone (nn.Module): The backbone to run; the runner keeps a reference.
    """

    num_stages: int
    stage_channels: Tuple[int, ...]
    out_indices: Tuple[int, ...]
    feedback_stages: FrozenSet[int]

    def __init__(self, backbone: nn.Module) -> None:
        self.backbone = backbone

    @property
    def last_stage(self) -> int:
        """The deepest stage a forward needs (deeper ones feed nothing)."""
        return max(self.out_indices)

    def stem(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def run_stage(self, index: int, x: Tensor, feedback: Optional[Tensor] = None) -> Tensor:
        raise NotImplementedError

    def _check_feedback_stage(self, index: int) -> None:
        if index not in self.feedback_stages:
            raise ValueError(f'{type(self.backbone).__name__} stage {index} has no residual block '
                             f'to take feedback; feedback stages: {sorted(self.feedback_stages)}')

    def forward(self,
                x: Tensor,
                feedback: Optional[Dict[int, Tensor]] = None) -> Tuple[Tensor, ...]:
        """The backbone's outputs, with ``feedback[i]`` added inside stage ``i``."""
        feedback = feedback or {}
        x = self.stem(x)
        outs = []
        for index in range(self.last_stage + 1):
            x = self.run_stage(index, x, feedback.get(index))
            if index in self.out_indices:
                outs.append(x)
        return tuple(outs)


def _sorted_indices(out_indices, num_stages: int, who: str) -> Tuple[int, ...]:
    if isinstance(out_indices, int):
        out_indices = (out_indices, )
    indices = tuple(sorted(set(out_indices)))
    if not indices or indices[0] < 0 or indices[-1] >= num_stages:
        raise ValueError(f'{who}.out_indices must name stages in 0..{num_stages - 1}, '
                         f'got {tuple(out_indices)}')
    return indices


class ResNetStageRunner(StageRunner):
    """mmdet/mmseg ``ResNet``, ``ResNetV1c``, ``ResNetV1d`` and ``ResNeXt``.

    The first block of every stage can take feedback. Its pre-activation is
    rebuilt as the block's forward builds it: ``conv1 -> norm1 -> ReLU
    (-> after_conv1 plugins) -> conv2 -> norm2 -> ReLU (-> after_conv2 plugins)
    -> conv3 -> norm3 (-> after_conv3 plugins)`` for bottlenecks, ``conv1 ->
    norm1 -> ReLU -> conv2 -> norm2`` for basic blocks, plus the (downsampled)
    shortcut; with ``with_cp`` that part is recomputed in backward, as the
    block itself does.
    """

    def __init__(self, backbone: nn.Module, bottleneck_types: Tuple[Type, ...],
                 basic_types: Tuple[Type, ...]) -> None:
        super().__init__(backbone)
        self.stages: List[nn.Module] = [getattr(backbone, name) for name in backbone.res_layers]
        self.num_stages = len(self.stages)
        channels = []
        supported = bottleneck_types + basic_types
        for index, stage in enumerate(self.stages):
            for block in (stage[0], stage[-1]):
                if type(block) not in supported:
                    raise ValueError(
                        f'backbone: {type(backbone).__name__} stage {index} has blocks of type '
                        f'{type(block).__name__}, which RecursiveFeaturePyramid cannot re-run '
                        f'with feedback; supported blocks: ResNet BasicBlock/Bottleneck and '
                        f'ResNeXt Bottleneck. {FUTURE_WORK}.')
            last = stage[-1]
            last_conv = last.conv3 if type(last) in bottleneck_types else last.conv2
            channels.append(last_conv.out_channels)
        self.bottleneck_types = bottleneck_types
        self.stage_channels = tuple(channels)
        self.out_indices = _sorted_indices(backbone.out_indices, self.num_stages, 'backbone')
        self.feedback_stages = frozenset(range(self.num_stages))

    def stem(self, x: Tensor) -> Tensor:
        backbone = self.backbone
        if backbone.deep_stem:
            x = backbone.stem(x)
        else:
            x = backbone.relu(backbone.norm1(backbone.conv1(x)))
        return backbone.maxpool(x)

    def _pre_activation(self, block: nn.Module) -> Callable[[Tensor], Tensor]:
        with_plugins = type(block) in self.bottleneck_types and block.with_plugins

        def plugins(out: Tensor, position: str) -> Tensor:
            if with_plugins:
                out = block.forward_plugin(out, getattr(block, f'{position}_plugin_names'))
            return out

        def bottleneck(x: Tensor) -> Tensor:
            out = plugins(block.relu(block.norm1(block.conv1(x))), 'after_conv1')
            out = plugins(block.relu(block.norm2(block.conv2(out))), 'after_conv2')
            out = plugins(block.norm3(block.conv3(out)), 'after_conv3')
            return out + (x if block.downsample is None else block.downsample(x))

        def basic(x: Tensor) -> Tensor:
            out = block.relu(block.norm1(block.conv1(x)))
            out = block.norm2(block.conv2(out))
            return out + (x if block.downsample is None else block.downsample(x))

        return bottleneck if type(block) in self.bottleneck_types else basic

    def run_stage(self, index: int, x: Tensor, feedback: Optional[Tensor] = None) -> Tensor:
        stage = self.stages[index]
        if feedback is None:
            return stage(x)
        self._check_feedback_stage(index)
        first = stage[0]
        pre_activation = self._pre_activation(first)
        if first.with_cp and x.requires_grad:
            out = cp.checkpoint(pre_activation, x, use_reentrant=False)
        else:
            out = pre_activation(x)
        x = first.relu(out + feedback)
        # ResLayer cannot be sliced (slicing rebuilds it through its __init__).
        for position in range(1, len(stage)):
            x = stage[position](x)
        return x


def _tree_with_feedback(tree: Tree, x: Tensor, children: Sequence[Tensor],
                        feedback: Tensor) -> Tensor:
    """``Tree.forward`` with ``feedback`` added to the pre-activation of its first block.

    The first block is reached through the ``tree1`` chain; the shortcut it
    receives is the tree's projected input, so adding the feedback to the
    shortcut adds it to ``residual(x) + shortcut``, before the block's ReLU.
    """
    bottom = tree.downsample(x)
    if tree.level_root:
        children = [*children, bottom]
    if tree.depth > 1:
        x1 = _tree_with_feedback(tree.tree1, x, (), feedback)
        return tree.tree2(x1, [*children, x1])
    x1 = tree.tree1(x, tree.project(bottom) + feedback)
    x2 = tree.tree2(x1)
    out = tree.root(torch.cat([x2, x1, *children], dim=1))
    if tree.residual_root:
        out = out + x2
    return tree.relu(out)


class DLAStageRunner(StageRunner):
    """This package's :class:`DLA`: stages are its levels 0-5.

    The stem is ``base_layer``; levels 0 and 1 are plain conv layers with no
    residual block, so only the trees of levels 2-5 take feedback, at their
    first block (``levelN.tree1`` down the ``tree1`` chain).
    """

    def __init__(self, backbone: DLA) -> None:
        super().__init__(backbone)
        self.num_stages = NUM_LEVELS
        self.stage_channels = tuple(backbone.channels)
        self.out_indices = _sorted_indices(backbone.out_indices, self.num_stages, 'backbone')
        self.feedback_stages = frozenset(range(2, NUM_LEVELS))
        for level in self.feedback_stages:
            node = getattr(backbone, f'level{level}')
            while isinstance(node, Tree):
                node = node.tree1
            assert isinstance(node, _ResidualBlock), f'level{level} does not start with a block'

    def stem(self, x: Tensor) -> Tensor:
        return self.backbone.base_layer(x)

    def run_stage(self, index: int, x: Tensor, feedback: Optional[Tensor] = None) -> Tensor:
        level = getattr(self.backbone, f'level{index}')
        if feedback is None:
            return level(x)
        self._check_feedback_stage(index)
        return _tree_with_feedback(level, x, (), feedback)


def _resnet_families() -> Dict[Type, Callable[[nn.Module], StageRunner]]:
    """Backbone class -> runner factory for the installed toolboxes' ResNets."""
    families: Dict[Type, Callable[[nn.Module], StageRunner]] = {}
    for toolbox, backbones in (('mmdet', ('ResNet', 'ResNetV1d', 'ResNeXt')),
                               ('mmseg', ('ResNet', 'ResNetV1c', 'ResNetV1d', 'ResNeXt'))):
        try:
            resnet = importlib.import_module(f'{toolbox}.models.backbones.resnet')
            resnext = importlib.import_module(f'{toolbox}.models.backbones.resnext')
        except ImportError:
            continue
        bottlenecks = (resnet.Bottleneck, resnext.Bottleneck)
        basics = (resnet.BasicBlock, )
        for name in backbones:
            cls = getattr(resnext if name == 'ResNeXt' else resnet, name)
            families[cls] = (
                lambda backbone, b=bottlenecks, s=basics: ResNetStageRunner(backbone, b, s))
    return families


def supported_backbones() -> Dict[Type, Callable[[nn.Module], StageRunner]]:
    """Every backbone class a runner exists for (exact classes, not subclasses)."""
    return {**_resnet_families(), DLA: DLAStageRunner}


def _describe(cls: Type) -> str:
    return f"{cls.__module__.split('.')[0]}.{cls.__name__}"


def build_stage_runner(backbone: nn.Module, who: str = 'backbone') -> StageRunner:
    """The runner of ``backbone``'s family, or a ValueError listing the supported types.

    Subclasses are refused on purpose: Res2Net, ResNeSt, RegNet and DetectoRS's
    ResNet subclass ResNet but change its blocks.
    """
    families = supported_backbones()
    factory = families.get(type(backbone))
    if factory is None:
        names = ', '.join(sorted(_describe(cls) for cls in families))
        raise ValueError(f'{who}: RecursiveFeaturePyramid cannot run a {type(backbone).__name__} '
                         f'stage by stage; supported types: {names}. {FUTURE_WORK}.')
    return factory(backbone)
