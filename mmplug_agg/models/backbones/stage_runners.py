"""Run a backbone stage by stage, optionally adding a feedback map inside a stage.

Recursive feature pyramids (:class:`RecursiveFeaturePyramid`) re-run a backbone
with the previous pyramid added to the first residual block of some stages,
*before* that block's final ReLU. A backbone's own ``forward`` gives no way to
do that, so a small adapter per backbone family re-implements the walk through
the backbone from its submodules, in the order its ``forward`` uses them:

* ``stem(x)``: everything before stage 0, giving the state stage 0 starts from;
* ``run_stage(i, state, feedback=None)``: stage ``i``, from the state the
  previous stage left; with ``feedback``, the first block computes its
  pre-activation (residual branch + shortcut) from its own submodules, adds
  ``feedback`` and applies its ReLU, and the remaining blocks run their usual
  forward;
* ``stage_output(i, state)``: what the backbone returns for stage ``i``. For
  CNNs the state is the feature map itself; Swin keeps the tokens before and
  after its patch merging and normalises and reshapes the former;
* ``num_stages``, ``stage_channels``: the stages and their output widths;
* ``out_indices``: the stages whose outputs the backbone returns (sorted, as
  the backbone returns them), i.e. what a neck receives;
* ``feedback_stages``: the stages whose first block can take feedback.

Without feedback a runner computes exactly what the backbone's ``forward``
does (the tests check this for every family). The adapters hold a reference to
the backbone and own no parameters; frozen stages and ``norm_eval`` stay the
backbone's business (its ``train()`` sets them).

Supported families: mmdet's and mmseg's ``ResNet``, ``ResNetV1c``/``ResNetV1d``
and ``ResNeXt`` (``BasicBlock`` and ``Bottleneck`` blocks, plugins, DCN and
``with_cp`` included), mmdet's ``Res2Net`` (``Bottle2neck``), mmdet's
``DetectoRS_ResNet``/``DetectoRS_ResNeXt`` used as plain backbones (switchable
atrous convolution and weight standardisation, without their own RFP inputs),
mmdet's and mmseg's ``SwinTransformer``, and this package's :class:`DLA`.
Other subclasses (ResNeSt, RegNet, HRNet...) are refused with a list of what is
supported.
"""
import importlib
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Sequence, Tuple, Type

import torch
import torch.utils.checkpoint as cp
from torch import Tensor, nn

from .dla import DLA, NUM_LEVELS, Tree, _ResidualBlock

# What a stage hands to the next one: a feature map for CNNs, a tuple for Swin.
StageState = Any


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

    def stem(self, x: Tensor) -> StageState:
        raise NotImplementedError

    def run_stage(self,
                  index: int,
                  state: StageState,
                  feedback: Optional[Tensor] = None) -> StageState:
        raise NotImplementedError

    def stage_output(self, index: int, state: StageState) -> Tensor:
        """The feature map the backbone returns for stage ``index``."""
        return state

    def _check_feedback_stage(self, index: int) -> None:
        if index not in self.feedback_stages:
            raise ValueError(f'{type(self.backbone).__name__} stage {index} has no residual block '
                             f'to take feedback; feedback stages: {sorted(self.feedback_stages)}')

    def forward(self,
                x: Tensor,
                feedback: Optional[Dict[int, Tensor]] = None) -> Tuple[Tensor, ...]:
        """The backbone's outputs, with ``feedback[i]`` added inside stage ``i``."""
        feedback = feedback or {}
        state = self.stem(x)
        outs = []
        for index in range(self.last_stage + 1):
            state = self.run_stage(index, state, feedback.get(index))
            if index in self.out_indices:
                outs.append(self.stage_output(index, state))
        return tuple(outs)


def _sorted_indices(out_indices, num_stages: int, who: str) -> Tuple[int, ...]:
    if isinstance(out_indices, int):
        out_indices = (out_indices, )
    indices = tuple(sorted(set(out_indices)))
    if not indices or indices[0] < 0 or indices[-1] >= num_stages:
        raise ValueError(f'{who}.out_indices must name stages in 0..{num_stages - 1}, '
                         f'got {tuple(out_indices)}')
    return indices


def _with_plugins(block: nn.Module, out: Tensor, position: str) -> Tensor:
    if getattr(block, 'with_plugins', False):
        out = block.forward_plugin(out, getattr(block, f'{position}_plugin_names'))
    return out


def _shortcut(block: nn.Module, x: Tensor) -> Tensor:
    return x if block.downsample is None else block.downsample(x)


def _bottleneck_pre_activation(block: nn.Module, x: Tensor) -> Tensor:
    """ResNet/ResNeXt/DetectoRS bottleneck up to its final ReLU (conv2 may be DCN or SAC)."""
    out = _with_plugins(block, block.relu(block.norm1(block.conv1(x))), 'after_conv1')
    out = _with_plugins(block, block.relu(block.norm2(block.conv2(out))), 'after_conv2')
    out = _with_plugins(block, block.norm3(block.conv3(out)), 'after_conv3')
    return out + _shortcut(block, x)


def _basic_pre_activation(block: nn.Module, x: Tensor) -> Tensor:
    out = block.norm2(block.conv2(block.relu(block.norm1(block.conv1(x)))))
    return out + _shortcut(block, x)


def _res2net_pre_activation(block: nn.Module, x: Tensor) -> Tensor:
    """Res2Net's ``Bottle2neck`` up to its final ReLU.

    The 1x1 conv's output is split into ``scales`` groups; group i > 0 goes
    through its own 3x3 conv, after adding the previous group's result in
    ``normal`` blocks (hierarchical residual) or on its own in the first,
    ``stage`` block of a stage; the last group is passed through, average-pooled
    when that first block strides.
    """
    out = _with_plugins(block, block.relu(block.norm1(block.conv1(x))), 'after_conv1')
    groups = torch.split(out, block.width, 1)
    hierarchical = block.stage_type != 'stage'
    branch = block.relu(block.bns[0](block.convs[0](groups[0].contiguous())))
    branches = [branch]
    for i in range(1, block.scales - 1):
        branch = branch + groups[i] if hierarchical else groups[i]
        branch = block.relu(block.bns[i](block.convs[i](branch.contiguous())))
        branches.append(branch)
    last = groups[block.scales - 1]
    if not hierarchical and block.conv2_stride != 1:
        last = block.pool(last)
    out = _with_plugins(block, torch.cat([*branches, last], 1), 'after_conv2')
    out = _with_plugins(block, block.norm3(block.conv3(out)), 'after_conv3')
    return out + _shortcut(block, x)


# Block family -> (its pre-activation, the name of its last conv).
PRE_ACTIVATIONS = {
    'bottleneck': (_bottleneck_pre_activation, 'conv3'),
    'basic': (_basic_pre_activation, 'conv2'),
    'res2net': (_res2net_pre_activation, 'conv3'),
}


class ResNetStageRunner(StageRunner):
    """mmdet/mmseg ResNets and their variants with ResNet-like blocks.

    The first block of every stage can take feedback. Its pre-activation is
    rebuilt from its submodules as the block's forward builds it (see
    ``PRE_ACTIVATIONS``): everything up to the residual sum, plugins included;
    with ``with_cp`` that part is recomputed in backward, as the block itself
    does.

    Args:
        backbone (nn.Module): The ResNet-like backbone.
        block_kinds (dict): Block class -> key of ``PRE_ACTIVATIONS``.
    """

    def __init__(self, backbone: nn.Module, block_kinds: Dict[Type, str]) -> None:
        super().__init__(backbone)
        self.stages: List[nn.Module] = [getattr(backbone, name) for name in backbone.res_layers]
        self.num_stages = len(self.stages)
        self.block_kinds = block_kinds
        channels = []
        for index, stage in enumerate(self.stages):
            for block in (stage[0], stage[-1]):
                if type(block) not in block_kinds:
                    names = ', '.join(sorted({cls.__name__ for cls in block_kinds}))
                    raise ValueError(
                        f'backbone: {type(backbone).__name__} stage {index} has blocks of type '
                        f'{type(block).__name__}, which RecursiveFeaturePyramid cannot re-run '
                        f'with feedback; supported blocks: {names}')
            _, last_conv = PRE_ACTIVATIONS[block_kinds[type(stage[-1])]]
            channels.append(getattr(stage[-1], last_conv).out_channels)
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

    def run_stage(self, index: int, x: Tensor, feedback: Optional[Tensor] = None) -> Tensor:
        stage = self.stages[index]
        if feedback is None:
            return stage(x)
        self._check_feedback_stage(index)
        first = stage[0]
        pre_activation, _ = PRE_ACTIVATIONS[self.block_kinds[type(first)]]
        if first.with_cp and x.requires_grad:
            out = cp.checkpoint(pre_activation, first, x, use_reentrant=False)
        else:
            out = pre_activation(first, x)
        x = first.relu(out + feedback)
        # ResLayer cannot be sliced (slicing rebuilds it through its __init__).
        for position in range(1, len(stage)):
            x = stage[position](x)
        return x


class SwinStageRunner(StageRunner):
    """mmdet's and mmseg's ``SwinTransformer``.

    A Swin stage (``SwinBlockSequence``) runs its blocks at one resolution and
    then merges 2x2 patches for the next stage; the backbone returns the tokens
    before the merge, normalised by ``norm{i}`` and reshaped to NCHW. The state
    between stages is ``(tokens, hw_shape, stage_tokens, stage_hw_shape)``: the
    merged tokens go on, the others make the stage's output.

    Swin blocks are pre-norm transformer blocks with no activation after the
    residual sum, so the feedback (flattened to tokens) is added to the
    residual stream where a ResNet adds it: at the output of the stage's first
    block.
    """

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__(backbone)
        self.num_stages = len(backbone.stages)
        self.stage_channels = tuple(int(c) for c in backbone.num_features)
        self.out_indices = _sorted_indices(backbone.out_indices, self.num_stages, 'backbone')
        self.feedback_stages = frozenset(range(self.num_stages))

    def stem(self, x: Tensor) -> StageState:
        backbone = self.backbone
        tokens, hw_shape = backbone.patch_embed(x)
        if backbone.use_abs_pos_embed:
            tokens = tokens + backbone.absolute_pos_embed
        return backbone.drop_after_pos(tokens), hw_shape, None, None

    def run_stage(self,
                  index: int,
                  state: StageState,
                  feedback: Optional[Tensor] = None) -> StageState:
        stage = self.backbone.stages[index]
        tokens, hw_shape = state[:2]
        if feedback is not None:
            self._check_feedback_stage(index)
        for position, block in enumerate(stage.blocks):
            tokens = block(tokens, hw_shape)
            if position == 0 and feedback is not None:
                tokens = tokens + feedback.flatten(2).transpose(1, 2)
        if stage.downsample:
            merged, merged_hw_shape = stage.downsample(tokens, hw_shape)
            return merged, merged_hw_shape, tokens, hw_shape
        return tokens, hw_shape, tokens, hw_shape

    def stage_output(self, index: int, state: StageState) -> Tensor:
        _, _, tokens, (height, width) = state
        tokens = getattr(self.backbone, f'norm{index}')(tokens)
        return tokens.view(-1, height, width,
                           self.stage_channels[index]).permute(0, 3, 1, 2).contiguous()


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


RunnerFactory = Callable[[nn.Module], StageRunner]


def _import(toolbox: str, module: str):
    try:
        return importlib.import_module(f'{toolbox}.models.backbones.{module}')
    except ImportError:
        return None


def _detectors_resnet_runner(backbone: nn.Module, block_kinds: Dict[Type, str]) -> StageRunner:
    # With these set the backbone expects mmdet's own RFP neck and its forward protocol.
    if backbone.rfp_inplanes or backbone.output_img:
        raise ValueError(
            f'backbone: {type(backbone).__name__} with rfp_inplanes or output_img is built for '
            f"mmdet's RFP neck; RecursiveFeaturePyramid adds the feedback itself: leave both "
            f'unset (sac and stage_with_sac are supported)')
    return ResNetStageRunner(backbone, block_kinds)


def _toolbox_families(toolbox: str) -> Dict[Type, RunnerFactory]:
    """Backbone class -> runner factory for one installed toolbox."""
    resnet, resnext = _import(toolbox, 'resnet'), _import(toolbox, 'resnext')
    if resnet is None or resnext is None:
        return {}
    kinds = {resnet.Bottleneck: 'bottleneck', resnext.Bottleneck: 'bottleneck',
             resnet.BasicBlock: 'basic'}
    families: Dict[Type, RunnerFactory] = {}

    def resnet_family(block_kinds):
        return lambda backbone: ResNetStageRunner(backbone, block_kinds)

    names = ('ResNet', 'ResNetV1c', 'ResNetV1d')
    for name in names:
        if hasattr(resnet, name):
            families[getattr(resnet, name)] = resnet_family(kinds)
    families[resnext.ResNeXt] = resnet_family(kinds)

    res2net = _import(toolbox, 'res2net')
    if res2net is not None:
        families[res2net.Res2Net] = resnet_family({res2net.Bottle2neck: 'res2net'})
    detectors_resnet = _import(toolbox, 'detectors_resnet')
    detectors_resnext = _import(toolbox, 'detectors_resnext')
    if detectors_resnet is not None and detectors_resnext is not None:
        detectors_kinds = {detectors_resnet.Bottleneck: 'bottleneck',
                           detectors_resnext.Bottleneck: 'bottleneck'}
        for cls in (detectors_resnet.DetectoRS_ResNet, detectors_resnext.DetectoRS_ResNeXt):
            families[cls] = (
                lambda backbone, k=detectors_kinds: _detectors_resnet_runner(backbone, k))
    swin = _import(toolbox, 'swin')
    if swin is not None:
        families[swin.SwinTransformer] = SwinStageRunner
    return families


def supported_backbones() -> Dict[Type, RunnerFactory]:
    """Every backbone class a runner exists for (exact classes, not subclasses)."""
    families: Dict[Type, RunnerFactory] = {}
    for toolbox in ('mmdet', 'mmseg'):
        families.update(_toolbox_families(toolbox))
    families[DLA] = DLAStageRunner
    return families


def _describe(cls: Type) -> str:
    return f"{cls.__module__.split('.')[0]}.{cls.__name__}"


def build_stage_runner(backbone: nn.Module, who: str = 'backbone') -> StageRunner:
    """The runner of ``backbone``'s family, or a ValueError listing the supported types.

    Subclasses are refused on purpose: ResNeSt, RegNet and others subclass
    ResNet but change its blocks or its forward.
    """
    families = supported_backbones()
    factory = families.get(type(backbone))
    if factory is None:
        names = ', '.join(sorted(_describe(cls) for cls in families))
        raise ValueError(f'{who}: RecursiveFeaturePyramid cannot run a {type(backbone).__name__} '
                         f'stage by stage; supported types: {names}')
    return factory(backbone)
