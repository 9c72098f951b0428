"""DetectoRS's Recursive Feature Pyramid (RFP) as a wrapper around any stage-runnable backbone.

Qiao, Chen and Yuille, "DetectoRS: Detecting Objects with Recursive Feature
Pyramid and Switchable Atrous Convolution", CVPR 2021. RFP "looks twice": the
pyramid built by a backbone and an FPN is fed back into the backbone, which
runs again with it and so sees the objects with the top-down context of the
first look. Unrolled over ``T = rfp_steps`` passes:

* pass 1: ``P = FPN(backbone(image))``;
* pass t > 1: every pyramid level ``i >= 1`` that comes from a backbone stage
  ``s(i)`` is transformed by a shared ASPP (:class:`DetectoRSASPP`) and a
  per-stage, zero-initialised 1x1 conv (``feedback_convs``) into that stage's
  width, and added to the first residual block of stage ``s(i)`` before its
  final ReLU while the backbone runs again; the same FPN turns the new
  outputs into ``P'``, and each level is fused with the previous pass through
  a gate shared by all levels and passes, a zero-initialised 1x1 conv to one
  channel: ``sigma = sigmoid(gate(P'))``, ``P <- sigma * P' + (1 - sigma) * P``.

The finest pyramid level (``i = 0``) is never fed back, exactly as mmdet's
``RFP``/``DetectoRS_ResNet`` do: RFP hands ``[P_0] + [ASPP(P_i) for i >= 1]``
to the backbone, whose stage 0 has no feedback conv and ignores ``P_0``.
That spares the ASPP's dilated 3x3 convs at the costliest (stride-4)
resolution. Levels added by the FPN on top of the backbone's (P6...) map to
no stage: they get no feedback (mmdet computes their ASPP and drops it), but
are fused by the gate like every level. Level ``i`` maps to stage
``out_indices[start_level + i]`` of the backbone (sorted), so it also works
for FPNs that skip the first backbone outputs; with ResNet's ``(0, 1, 2, 3)``
and ``start_level=0`` this is mmdet's "level i feeds stage i".

Zero-initialised feedback convs and gate make the second pass start as a
plain second look (``sigma = 0.5``), which is the intent of the DetectoRS code.
In mmdet 3.x that zero init is lost: ``DetectoRS_ResNet.init_weights`` gives the
``rfp_conv`` Kaiming-normal weights (or PyTorch's default when a checkpoint
is loaded), so mmdet starts from random feedback. Here the zero init survives
``init_weights()``, unless the wrapper itself loads a checkpoint.

By default (``share_backbone_weights=False``, as in DetectoRS) every later pass
runs its own copy of the backbone, built from the same config and initialised
the same way. With ``share_backbone_weights=True`` every pass runs the first
backbone, so RFP adds only the ASPP, one set of feedback convs and the gate;
the stem and the stages before the first fed stage then give the same output
in every pass, so later passes start from the first pass's output there
instead of recomputing it.

The backbone is run through a stage runner (:mod:`.stage_runners`): mmdet's
and mmseg's ResNet, ResNetV1c/ResNetV1d, ResNeXt and SwinTransformer, mmdet's
Res2Net and DetectoRS_ResNet/DetectoRS_ResNeXt (whose switchable atrous
convolution makes RFP + SAC, the full DetectoRS backbone), and this package's
DLA.
"""
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmcv.cnn.bricks.conv_ws import ConvAWS2d
from mmcv.ops import SAConv2d
from mmengine.model import BaseModule, ModuleList
from mmengine.registry import Registry
from torch import Tensor, nn

from mmplug_agg.models.layers.aspp import DetectoRSASPP
from mmplug_agg.models.layers.channel_check import check_in_channels
from mmplug_agg.registry import MODEL_REGISTRIES, register_backbone

from .stage_runners import StageRunner, StageState, build_stage_runner

# A feedback path: (pyramid level that is fed back, backbone stage it enters).
FeedbackPath = Tuple[int, int]
# Where a later pass may start when the backbone is shared:
# (first stage to run, its input, the outputs of the stages before it).
Resume = Tuple[int, StageState, Tuple[Tensor, ...]]


def _build_registry() -> Registry:
    """The registry that builds the inner backbone and neck.

    mmengine's ``Registry.build`` switches to the registry of the current
    default scope when one is set (a config's ``default_scope``, which the
    runner installs, or a ``_scope_`` key of the config being built), so
    building through mmdet's registry finds mmseg's modules in an mmseg run.
    The registry that builds this wrapper sets no scope by itself: with none
    set (a bare ``MODELS.build`` call) mmdet's own modules are used, or
    mmseg's when mmdet is not installed; ``'mmseg.ResNetV1c'``-style types
    pick a toolbox explicitly.
    """
    return MODEL_REGISTRIES.get('mmdet') or MODEL_REGISTRIES['mmseg']


def calibrate_weight_standardisation(module: nn.Module) -> None:
    """Make every ``ConvAWS2d`` in ``module`` (SAC included) compute with its weights as they are.

    ConvAWS standardises each filter to zero mean and unit variance and rescales it by
    the buffers ``weight_gamma``/``weight_beta``, which loading a checkpoint sets to
    the loaded filter's statistics. Without a checkpoint they stay 1 and 0, so every
    conv has weights of standard deviation 1 instead of an initialiser's sqrt(2 /
    fan), and with BN in eval mode (identity statistics) the activations grow by
    about sqrt(fan) per conv: the first SAC input of a from-scratch R50 reached 6.6e10
    at 160x160, and mmcv's CPU deformable conv backward then crashed the process.
    Setting the buffers from the current weights, as loading would, keeps the
    initialiser's scale.
    """
    for conv in module.modules():
        if isinstance(conv, ConvAWS2d):
            weight = conv.weight.detach().flatten(1)
            conv.weight_beta.copy_(weight.mean(dim=1).view_as(conv.weight_beta))
            conv.weight_gamma.copy_(
                torch.sqrt(weight.var(dim=1) + 1e-5).view_as(conv.weight_gamma))


def _check_positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f'{name} must be a positive int, got {value!r}')


@register_backbone
class RecursiveFeaturePyramid(BaseModule):
    """Recursive Feature Pyramid (DetectoRS) around a backbone and an FPN-like neck.

    Use it as the detector's backbone, with ``neck=None`` on the detector: it
    returns the fused pyramid of the last pass.

    Args:
        backbone (dict): Config of the backbone (``ResNet``, ``ResNetV1c``,
            ``ResNetV1d``, ``ResNeXt``, ``SwinTransformer`` of mmdet or mmseg,
            mmdet's ``Res2Net``, ``DetectoRS_ResNet`` or ``DetectoRS_ResNeXt``
            with SAC, or ``DLA``); its
            ``init_cfg``, ``frozen_stages`` and ``norm_eval`` apply to every copy.
        neck (dict): Config of an FPN-like neck (``in_channels``,
            ``out_channels``, optional ``start_level``/``end_level``), shared
            by all passes. Its ``in_channels`` must be the widths of the
            backbone's ``out_indices`` stages, and its ``out_channels`` must
            be ``aspp_out_channels * len(aspp_dilations)``.
        rfp_steps (int): Number of passes (the paper's T), at least 2.
        aspp_out_channels (int): Width of each ASPP branch (64 for a 256-wide
            FPN with four branches).
        aspp_dilations (Sequence[int]): ASPP branches: 1 is a 1x1 conv, d > 1 a
            3x3 conv with dilation d, the last entry (1) the pooled branch.
        share_backbone_weights (bool): Run every pass with the first backbone
            instead of one copy per later pass.
        init_cfg (dict | list[dict], optional): Initialization of the wrapper.
            The inner modules initialise themselves from their own configs;
            the feedback convs and the gate are zeroed after that, unless this
            ``init_cfg`` loads a checkpoint.

    Example:
        >>> import torch
        >>> import mmplug_agg  # noqa: F401
        >>> from mmplug_agg.models.backbones import RecursiveFeaturePyramid
        >>> rfp = RecursiveFeaturePyramid(
        ...     backbone=dict(type='ResNet', depth=18, norm_eval=False),
        ...     neck=dict(type='FPN', in_channels=[64, 128, 256, 512],
        ...               out_channels=64, num_outs=5),
        ...     rfp_steps=2, aspp_out_channels=16).eval()
        >>> for level in rfp(torch.rand(1, 3, 99, 131)):
        ...     print(tuple(level.shape))
        (1, 64, 25, 33)
        (1, 64, 13, 17)
        (1, 64, 7, 9)
        (1, 64, 4, 5)
        (1, 64, 2, 3)
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 rfp_steps: int = 2,
                 aspp_out_channels: int = 64,
                 aspp_dilations: Sequence[int] = (1, 3, 6, 1),
                 share_backbone_weights: bool = False,
                 init_cfg: Union[dict, List[dict], None] = None) -> None:
        super().__init__(init_cfg)
        if not isinstance(rfp_steps, int) or isinstance(rfp_steps, bool) or rfp_steps < 2:
            raise ValueError(f'rfp_steps must be an int >= 2 (1 would be a plain backbone + '
                             f'neck), got {rfp_steps!r}')
        if not isinstance(share_backbone_weights, bool):
            raise ValueError(f'share_backbone_weights must be True or False, '
                             f'got {share_backbone_weights!r}')
        _check_positive_int('aspp_out_channels', aspp_out_channels)
        DetectoRSASPP.check_dilations(aspp_dilations, name='aspp_dilations')
        for name, cfg in (('backbone', backbone), ('neck', neck)):
            if not isinstance(cfg, dict) or 'type' not in cfg:
                raise ValueError(f'{name} must be a config dict with a type, got {cfg!r}')
        self.rfp_steps = rfp_steps
        self.share_backbone_weights = share_backbone_weights
        registry = _build_registry()

        self.backbone = registry.build(copy.deepcopy(backbone))
        runner = build_stage_runner(self.backbone)
        self.neck = registry.build(copy.deepcopy(neck))
        self.feedback_paths = self._feedback_paths(runner, self.neck)
        self._first_fed_stage = min(stage for _, stage in self.feedback_paths)
        width = self.neck.out_channels
        num_branches = len(tuple(aspp_dilations))
        if aspp_out_channels * num_branches != width:
            # The ASPP output takes the place of a pyramid level on the feedback path.
            hint = (f'use aspp_out_channels={width // num_branches}' if width % num_branches == 0
                    else f'{width} is not divisible by {num_branches}: change the neck width')
            raise ValueError(f'aspp_out_channels ({aspp_out_channels}) x {num_branches} ASPP '
                             f"branches must equal the neck's out_channels ({width}); {hint}")

        # Later passes' backbones: one copy each, or none when the first is shared.
        self.rfp_backbones = ModuleList()
        runners = [runner]
        if not share_backbone_weights:
            for _ in range(1, rfp_steps):
                self.rfp_backbones.append(registry.build(copy.deepcopy(backbone)))
                runners.append(build_stage_runner(self.rfp_backbones[-1]))
        self._runners: List[StageRunner] = runners

        self.aspp = DetectoRSASPP(width, aspp_out_channels, aspp_dilations)
        # One set of feedback convs per backbone that receives feedback.
        self.feedback_convs = ModuleList()
        for _ in range(1 if share_backbone_weights else rfp_steps - 1):
            self.feedback_convs.append(
                nn.ModuleList(
                    nn.Conv2d(width, runner.stage_channels[stage], 1, bias=True)
                    for _, stage in self.feedback_paths))
        self.gate = nn.Conv2d(width, 1, 1, bias=True)
        self._zero_fusion_layers()
        # Finite activations even when init_weights() is never called.
        for built in (self.backbone, *self.rfp_backbones):
            calibrate_weight_standardisation(built)

    @staticmethod
    def _feedback_paths(runner: StageRunner, neck: nn.Module) -> Tuple[FeedbackPath, ...]:
        """(pyramid level, backbone stage) of every level that is fed back."""
        in_channels = getattr(neck, 'in_channels', None)
        if not isinstance(getattr(neck, 'out_channels', None), int) or not isinstance(
                in_channels, (list, tuple)):
            raise ValueError(f'neck must be FPN-like, with a list in_channels and an int '
                             f'out_channels; {type(neck).__name__} is not')
        stage_widths = [runner.stage_channels[i] for i in runner.out_indices]
        check_in_channels(f'{type(neck).__name__} (RecursiveFeaturePyramid neck, fed by '
                          f'backbone stages {list(runner.out_indices)})', stage_widths,
                          in_channels, argument='neck.in_channels')
        start = getattr(neck, 'start_level', 0)
        end = getattr(neck, 'backbone_end_level', len(in_channels))
        paths = []
        for level in range(1, end - start):
            stage = runner.out_indices[start + level]
            if stage not in runner.feedback_stages:
                raise ValueError(
                    f'backbone.out_indices: pyramid level {level} comes from stage {stage} of '
                    f'{type(runner.backbone).__name__}, which cannot take feedback; levels >= 1 '
                    f'must come from stages {sorted(runner.feedback_stages)}')
            paths.append((level, stage))
        if not paths:
            raise ValueError(f'neck must take at least two backbone levels (start_level..'
                             f'end_level) so that some level is fed back; it takes {end - start}')
        return tuple(paths)

    def _zero_fusion_layers(self) -> None:
        # Zero feedback and a gate at 0.5: the second pass starts as a plain second look.
        for conv in [*self.feedback_convs.modules(), self.gate]:
            if isinstance(conv, nn.Conv2d):
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)

    @staticmethod
    def _loads_checkpoint(init_cfg) -> bool:
        cfgs = init_cfg if isinstance(init_cfg, list) else [init_cfg]
        return any(isinstance(cfg, dict) and cfg.get('type') == 'Pretrained' for cfg in cfgs)

    def _backbone_starts_from_scratch(self, backbone: nn.Module) -> bool:
        return not (self._loads_checkpoint(getattr(backbone, 'init_cfg', None))
                    or isinstance(getattr(backbone, 'pretrained', None), str))

    def init_weights(self) -> None:
        """Initialise the inner modules from their configs, then restore two zero inits.

        A wrapper-level ``init_cfg`` such as Kaiming on every ``Conv2d`` would
        otherwise reach the feedback convs and the gate; a wrapper-level
        checkpoint keeps what it loaded. A backbone initialised from scratch
        gives every ``Conv2d`` Kaiming weights (mmdet's ResNet and
        DetectoRS_ResNet do), which also reaches the switch, contexts and
        offsets of its switchable atrous convs; SAC's own init (switch 1,
        i.e. the rate-1 branch only, no context, no offset, no large-rate
        weight difference) is then applied again, as SAC has it when the
        backbone loads ImageNet weights, and weight-standardised convs get the
        scale of their initialiser (:func:`calibrate_weight_standardisation`).
        """
        first_time = not self.is_init
        super().init_weights()
        if not first_time or self._loads_checkpoint(self.init_cfg):
            return
        self._zero_fusion_layers()
        for backbone in (self.backbone, *self.rfp_backbones):
            if self._backbone_starts_from_scratch(backbone):
                for module in backbone.modules():
                    if isinstance(module, SAConv2d):
                        module.init_weights()
                calibrate_weight_standardisation(backbone)

    def _run_backbone(
            self,
            runner: StageRunner,
            image: Optional[Tensor] = None,
            feedback: Optional[Dict[int, Tensor]] = None,
            resume: Optional[Resume] = None,
            keep_from: Optional[int] = None) -> Tuple[Tuple[Tensor, ...], Optional[Resume]]:
        """Outputs of one backbone pass and, if ``keep_from`` is given, the state at that stage."""
        feedback = feedback or {}
        if resume is None:
            start, state, outs = 0, runner.stem(image), []
        else:
            start, state, kept = resume
            outs = list(kept)
        kept_state = None
        for stage in range(start, runner.last_stage + 1):
            if stage == keep_from:
                kept_state = (stage, state, tuple(outs))
            state = runner.run_stage(stage, state, feedback.get(stage))
            if stage in runner.out_indices:
                outs.append(runner.stage_output(stage, state))
        return tuple(outs), kept_state

    def _fuse(self, new: Tensor, old: Tensor) -> Tensor:
        weight = torch.sigmoid(self.gate(new))
        return weight * new + (1 - weight) * old

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        feats, resume = self._run_backbone(
            self._runners[0],
            image=x,
            keep_from=self._first_fed_stage if self.share_backbone_weights else None)
        pyramid = tuple(self.neck(feats))
        for step in range(1, self.rfp_steps):
            index = 0 if self.share_backbone_weights else step - 1
            feedback = {
                stage: conv(self.aspp(pyramid[level]))
                for (level, stage), conv in zip(self.feedback_paths, self.feedback_convs[index])
            }
            if self.share_backbone_weights:
                feats, _ = self._run_backbone(self._runners[0], feedback=feedback, resume=resume)
            else:
                feats, _ = self._run_backbone(self._runners[step], image=x, feedback=feedback)
            new = tuple(self.neck(feats))
            pyramid = tuple(self._fuse(n, p) for n, p in zip(new, pyramid))
        return pyramid
