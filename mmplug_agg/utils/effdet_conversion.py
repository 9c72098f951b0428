"""effdet's EfficientDet state dicts in mmplug_agg's EfficientDet layout.

effdet (rwightman/efficientdet-pytorch) holds a timm ``tf_efficientnet_*`` /
``efficientnet_*`` backbone (``backbone.*``), its ``BiFpn`` (``fpn.*``) and two
``HeadNet`` (``class_net.*``, ``box_net.*``). Ours: mmdet's ``EfficientNet``
(``backbone.layers.*``), :class:`~mmplug_agg.models.necks.BiFPN` (``neck.*``) and
:class:`~mmplug_agg.models.dense_heads.EfficientDetSepBNHead` (``bbox_head.*``).
Every source tensor is moved once, except:

* the biases TensorFlow's checkpoints carry in front of a BN (effdet's
  ``redundant_bias``) are folded into that BN's running mean
  (``BN(x + b) = BN'(x)`` with ``mean' = mean - b``; exact in eval mode, and training
  mode subtracts the batch mean anyway), so one layout serves both kinds of checkpoint;
* the prediction rows are reordered: effdet's anchors at a location are octave-major
  (aspect inner) and its deltas (dy, dx, dh, dw); ours follow mmdet (anchor shape
  major, octave inner; dx, dy, dw, dh). The permutation is derived from both anchor
  lists (:func:`anchor_permutation`);
* a 90-class checkpoint (COCO category ids 1-90, effdet's class ``c`` is id ``c + 1``)
  loads into an 80-class config by keeping the rows of mmdet's 80 COCO categories in
  mmdet's order (:data:`COCO_CATEGORY_IDS`).
"""
import math
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from mmplug_agg.models.necks.bifpn import bifpn_topology
from mmplug_agg.utils.conversion import SourceState
from mmplug_agg.utils.launch import UserFacingError

ARCH = 'effdet EfficientDet'

# effdet model name -> our config (configs/<name>.py). The TensorFlow ports need TF's SAME
# padding (our real configs); effdet's own efficientdet_d0/d1 pad symmetrically.
EFFDET_CONFIGS: Dict[str, str] = {
    **{f'tf_efficientdet_d{i}': f'efficientdet_d{i}_bifpn_coco' for i in range(8)},
    'tf_efficientdet_d7x': 'efficientdet_d7x_bifpn_coco',
    'efficientdet_d0': 'efficientdet_d0_bifpn_coco_effdet',
    'efficientdet_d1': 'efficientdet_d1_bifpn_coco_effdet',
}

# effdet's anchor shapes, (width, height) multipliers in its order, and octave scales.
EFFDET_ASPECTS = ((1.0, 1.0), (1.4, 0.7), (0.7, 1.4))
EFFDET_NUM_SCALES = 3

# mmdet's CocoDataset categories in label order: label i is COCO category id
# COCO_CATEGORY_IDS[i] (ids 1-90 without the 10 ids COCO never uses).
COCO_CATEGORY_IDS = tuple(i for i in range(1, 91)
                          if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))

# timm EfficientNet stage -> mmdet EfficientNet layer: mmdet merges stages 3+4 (80 and 112
# channels) and 5+6 (192 and 320) into one layer each, so that out_indices (3, 4, 5) are the
# stride 8, 16 and 32 outputs.
_STAGE_TO_LAYER = {0: 1, 1: 2, 2: 3, 3: 4, 4: 4, 5: 5, 6: 5}
_DS_BLOCK = {'conv_dw': 'depthwise_conv.conv', 'bn1': 'depthwise_conv.bn',
             'conv_pw': 'linear_conv.conv', 'bn2': 'linear_conv.bn'}
_IR_BLOCK = {'conv_pw': 'expand_conv.conv', 'bn1': 'expand_conv.bn',
             'conv_dw': 'depthwise_conv.conv', 'bn2': 'depthwise_conv.bn',
             'conv_pwl': 'linear_conv.conv', 'bn3': 'linear_conv.bn'}
_SE = {'se.conv_reduce': 'se.conv1.conv', 'se.conv_expand': 'se.conv2.conv'}
_BN_KEYS = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')
_BLOCK_KEY = re.compile(r'backbone\.blocks\.(\d+)\.(\d+)\.(.+)\.(\w+)')


def anchor_permutation(target_aspects: Sequence[Tuple[float, float]], num_scales: int,
                       source_aspects: Sequence[Tuple[float, float]] = EFFDET_ASPECTS,
                       scale_major: bool = True, tolerance: float = 1e-6) -> List[int]:
    """``perm[m]``: effdet's index of our anchor ``m`` at one location.

    effdet orders a location's anchors octave-major (index ``octave * A + aspect``);
    mmdet's generators with ``scale_major=True`` shape-major (``aspect * S + octave``).

    Raises:
        UserFacingError: a target shape has no source shape within ``tolerance``
            (relative).
    """
    perm = []
    num_aspects = len(target_aspects)
    for m in range(num_aspects * num_scales):
        aspect, octave = divmod(m, num_scales) if scale_major else divmod(m, num_aspects)[::-1]
        w, h = target_aspects[aspect]
        matches = [i for i, (sw, sh) in enumerate(source_aspects)
                   if abs(sw - w) <= tolerance * sw and abs(sh - h) <= tolerance * sh]
        if len(matches) != 1 or len(target_aspects) != len(source_aspects):
            raise UserFacingError(
                f'the config\'s anchor shapes {list(target_aspects)} are not effdet\'s '
                f'{list(source_aspects)}; use EfficientDetAnchorGenerator (its default aspects)')
        perm.append(octave * len(source_aspects) + matches[0])
    return perm


def aspects_of(anchor_generator: Mapping) -> List[Tuple[float, float]]:
    """(width, height) multipliers of a config's anchor generator, in its order."""
    if 'aspects' in anchor_generator or anchor_generator.get('type') == \
            'EfficientDetAnchorGenerator':
        from mmplug_agg.models.dense_heads.efficientdet_head import EFFDET_ASPECTS as ours
        return [tuple(a) for a in anchor_generator.get('aspects', ours)]
    # mmdet's AnchorGenerator: ratio r = h / w at unit area.
    return [(1 / math.sqrt(r), math.sqrt(r)) for r in anchor_generator['ratios']]


def reorder_prediction_rows(tensor: torch.Tensor, perm: Sequence[int], per_anchor: Sequence[int],
                  source_per_anchor: int) -> torch.Tensor:
    """Rows ``perm[m] * source_per_anchor + per_anchor[c]`` in our order ``m * C + c``."""
    rows = torch.tensor([p * source_per_anchor + c for p in perm for c in per_anchor])
    return tensor[rows].clone()


def class_rows(source_classes: int, target_classes: int) -> List[int]:
    """effdet class index of each of our labels."""
    if source_classes == target_classes:
        return list(range(target_classes))
    if source_classes == 90 and target_classes == 80:
        return [i - 1 for i in COCO_CATEGORY_IDS]
    raise UserFacingError(f'the checkpoint predicts {source_classes} classes and the config '
                          f'{target_classes}: only equal counts or 90 (COCO ids) -> 80 (mmdet '
                          "COCO) convert; set the config's num_classes")


def _take_bn(source: SourceState, src: str, dst: str, out: Dict[str, torch.Tensor],
             fold_bias: Optional[torch.Tensor] = None) -> None:
    for name in _BN_KEYS:
        if f'{src}.{name}' in source:
            out[f'{dst}.{name}'] = source.take(f'{src}.{name}')
    if fold_bias is not None:
        out[f'{dst}.running_mean'] = out[f'{dst}.running_mean'] - fold_bias


def _convert_backbone(source: SourceState, out: Dict[str, torch.Tensor]) -> None:
    out['backbone.layers.0.conv.weight'] = source.take('backbone.conv_stem.weight')
    _take_bn(source, 'backbone.bn1', 'backbone.layers.0.bn', out)
    blocks = sorted({(int(m[1]), int(m[2])) for m in map(_BLOCK_KEY.fullmatch, source.keys())
                     if m})
    per_stage: Dict[int, int] = {}
    for stage, _ in blocks:
        per_stage[stage] = per_stage.get(stage, 0) + 1
    if sorted(per_stage) != list(range(7)):
        raise UserFacingError(f'{source.name}: the backbone has stages {sorted(per_stage)}, '
                              'not the 7 of an EfficientNet')
    for stage, block in blocks:
        layer = _STAGE_TO_LAYER[stage]
        # The second stage of a merged layer continues the first one's block numbering.
        index = block + (per_stage[stage - 1] if stage in (4, 6) else 0)
        src = f'backbone.blocks.{stage}.{block}'
        dst = f'backbone.layers.{layer}.{index}'
        names = _IR_BLOCK if f'{src}.conv_pwl.weight' in source else _DS_BLOCK
        for timm_name, ours in names.items():
            if timm_name.startswith('bn'):
                _take_bn(source, f'{src}.{timm_name}', f'{dst}.{ours}', out)
            else:
                out[f'{dst}.{ours}.weight'] = source.take(f'{src}.{timm_name}.weight')
        for timm_name, ours in _SE.items():
            for param in ('weight', 'bias'):
                out[f'{dst}.{ours}.{param}'] = source.take(f'{src}.{timm_name}.{param}')


def _lateral(source: SourceState, src: str, dst: str, out: Dict[str, torch.Tensor]) -> None:
    """effdet's 1x1 ``ConvBnAct2d`` (conv.conv, conv.bn) -> our ConvModule (conv, bn)."""
    out[f'{dst}.conv.weight'] = source.take(f'{src}.conv.weight')
    bias = source.take(f'{src}.conv.bias') if f'{src}.conv.bias' in source else None
    _take_bn(source, f'{src}.bn', f'{dst}.bn', out, fold_bias=bias)


def _convert_fpn(source: SourceState, out: Dict[str, torch.Tensor], num_levels: int) -> None:
    extra = sorted({int(k.split('.')[2]) for k in source.keys()
                    if k.startswith('fpn.resample.') and k.endswith('.conv.conv.weight')})
    # effdet numbers the extra levels by pyramid index (3 = P6 after three backbone levels,
    # as in every effdet EfficientDet); ours count from 0. Only the first extra level has a
    # conv (the backbone's channels differ from the BiFPN's).
    for level in extra:
        _lateral(source, f'fpn.resample.{level}.conv', f'neck.extra_levels.{level - 3}.0', out)
    topology = bifpn_topology(num_levels)
    cells = sorted({int(k.split('.')[2]) for k in source.keys() if k.startswith('fpn.cell.')})
    for cell in cells:
        for node, (_, inputs) in enumerate(topology):
            src = f'fpn.cell.{cell}.fnode.{node}'
            dst = f'neck.cells.{cell}.nodes.{node}'
            if f'{src}.combine.edge_weights' in source:
                out[f'{dst}.fusion_weights'] = source.take(f'{src}.combine.edge_weights')
            for position, offset in enumerate(inputs):
                lateral = f'{src}.combine.resample.{offset}.conv'
                if f'{lateral}.conv.weight' in source:
                    _lateral(source, lateral, f'{dst}.laterals.{position}', out)
            conv = f'{src}.after_combine.conv'
            out[f'{dst}.conv.depthwise_conv.conv.weight'] = source.take(f'{conv}.conv_dw.weight')
            out[f'{dst}.conv.pointwise_conv.conv.weight'] = source.take(f'{conv}.conv_pw.weight')
            bias = (source.take(f'{conv}.conv_pw.bias') if f'{conv}.conv_pw.bias' in source
                    else None)
            _take_bn(source, f'{conv}.bn', f'{dst}.conv.pointwise_conv.bn', out, fold_bias=bias)


def _convert_net(source: SourceState, out: Dict[str, torch.Tensor], net: str, ours: str,
                 num_levels: int, perm: Sequence[int], per_anchor: Sequence[int],
                 source_per_anchor: int) -> None:
    repeats = sorted({int(k.split('.')[2]) for k in source.keys()
                      if k.startswith(f'{net}.conv_rep.')})
    for i in repeats:
        src = f'{net}.conv_rep.{i}'
        out[f'bbox_head.{ours}_convs.{i}.depthwise.weight'] = source.take(f'{src}.conv_dw.weight')
        out[f'bbox_head.{ours}_convs.{i}.pointwise.weight'] = source.take(f'{src}.conv_pw.weight')
        bias = source.take(f'{src}.conv_pw.bias') if f'{src}.conv_pw.bias' in source else None
        # The conv is shared by all levels, each level has its own BN: fold into every one.
        for level in range(num_levels):
            _take_bn(source, f'{net}.bn_rep.{i}.{level}.bn',
                     f'bbox_head.{ours}_norms.{level}.{i}', out, fold_bias=bias)
    out[f'bbox_head.{ours}_pred.depthwise.weight'] = source.take(f'{net}.predict.conv_dw.weight')
    for param in ('weight', 'bias'):
        out[f'bbox_head.{ours}_pred.pointwise.{param}'] = reorder_prediction_rows(
            source.take(f'{net}.predict.conv_pw.{param}'), perm, per_anchor, source_per_anchor)


def effdet_num_classes(source: SourceState) -> int:
    anchors = source.shape('box_net.predict.conv_pw.weight')[0] // 4
    return source.shape('class_net.predict.conv_pw.weight')[0] // anchors


def is_tf_checkpoint(source: SourceState) -> bool:
    """TensorFlow ports carry a bias before every BN (effdet's ``redundant_bias``)."""
    return 'fpn.cell.0.fnode.0.after_combine.conv.conv_pw.bias' in source


def describe_effdet(source: SourceState) -> str:
    """A one-line summary of an effdet checkpoint's architecture."""
    keys = source.keys()
    blocks = len({m.group(1, 2) for m in map(_BLOCK_KEY.fullmatch, keys) if m})
    cells = len({k.split('.')[2] for k in keys if k.startswith('fpn.cell.')})
    convs = len({k.split('.')[2] for k in keys if k.startswith('box_net.conv_rep.')})
    levels = len({k.split('.')[3] for k in keys if k.startswith('box_net.bn_rep.0.')})
    channels = source.shape('box_net.predict.conv_dw.weight')[0]
    return (f'{blocks} backbone blocks, BiFPN {channels} ch x {cells} cells over {levels} '
            f'levels, {convs} head convs, {effdet_num_classes(source)} classes')


def describe_ours(state: Mapping[str, torch.Tensor]) -> str:
    """The same summary for one of our EfficientDet state dicts."""
    keys = list(state)
    blocks = len({tuple(k.split('.')[2:4]) for k in keys
                  if re.match(r'backbone\.layers\.[1-9]\d*\.\d+\.', k)})
    cells = len({k.split('.')[2] for k in keys if k.startswith('neck.cells.')})
    convs = len({k.split('.')[2] for k in keys if k.startswith('bbox_head.reg_convs.')})
    levels = len({k.split('.')[2] for k in keys if k.startswith('bbox_head.reg_norms.')})
    channels = state['bbox_head.reg_pred.depthwise.weight'].shape[0]
    anchors = state['bbox_head.reg_pred.pointwise.weight'].shape[0] // 4
    classes = state['bbox_head.cls_pred.pointwise.weight'].shape[0] // anchors
    return (f'{blocks} backbone blocks, BiFPN {channels} ch x {cells} cells over {levels} '
            f'levels, {convs} head convs, {classes} classes')


def convert_effdet(source: SourceState, num_classes: Optional[int] = None,
                   aspects: Optional[Sequence[Tuple[float, float]]] = None,
                   num_scales: int = EFFDET_NUM_SCALES) -> Dict[str, torch.Tensor]:
    """Convert an effdet ``EfficientDet`` state dict to our detector's keys.

    Args:
        source: the effdet ``EfficientDet`` tensors (``model.state_dict()``).
        num_classes: classes of the target config; defaults to the checkpoint's.
        aspects: the target anchor generator's (width, height) shapes in its order;
            defaults to :class:`EfficientDetAnchorGenerator`'s.
        num_scales: octave scales per shape (effdet's and automl's 3).

    Returns:
        The state dict for ``backbone``, ``neck`` and ``bbox_head``.
    """
    source.require_keys(['backbone.conv_stem.weight',
                         'fpn.cell.0.fnode.0.after_combine.conv.conv_dw.weight',
                         'class_net.predict.conv_pw.weight', 'box_net.predict.conv_pw.weight'],
                        ARCH)
    if aspects is None:
        from mmplug_agg.models.dense_heads.efficientdet_head import EFFDET_ASPECTS as ours
        aspects = ours
    source_classes = effdet_num_classes(source)
    num_classes = source_classes if num_classes is None else num_classes
    num_levels = len({k.split('.')[3] for k in source.keys()
                      if k.startswith('box_net.bn_rep.0.')})
    perm = anchor_permutation(aspects, num_scales)
    out: Dict[str, torch.Tensor] = {}
    _convert_backbone(source, out)
    _convert_fpn(source, out, num_levels)
    _convert_net(source, out, 'class_net', 'cls', num_levels, perm,
                 class_rows(source_classes, num_classes), source_classes)
    _convert_net(source, out, 'box_net', 'reg', num_levels, perm, [1, 0, 3, 2], 4)
    return out



def load_effdet_checkpoint(filename: str, map_location=None) -> Dict[str, torch.Tensor]:
    """``effdet://<model>``: effdet's pretrained weights, converted for our 80-class configs.

    effdet downloads the checkpoint (``effdet.create_model(..., pretrained=True)``); the
    state dict returned fits ``EFFDET_CONFIGS[<model>]`` (``load_from=`` or an
    ``init_cfg`` of type ``Pretrained``).
    """
    name = filename[len('effdet://'):]
    if name not in EFFDET_CONFIGS:
        raise ValueError(f'{filename}: mmplug_agg converts the effdet models '
                         f'{sorted(EFFDET_CONFIGS)}')
    try:
        import effdet
    except ImportError as err:
        raise ImportError(f'{filename} needs effdet: pip install effdet') from err
    model = effdet.create_model(name, pretrained=True, pretrained_backbone=False)
    state = convert_effdet(SourceState(model.state_dict(), name=filename), num_classes=80)
    if map_location is not None:
        state = {k: v.to(map_location) for k, v in state.items()}
    return state
