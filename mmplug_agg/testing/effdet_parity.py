"""End-to-end parity of a converted effdet EfficientDet with the original (tests, benchmarks).

:func:`check_effdet_parity` builds an effdet model with random weights, BN statistics,
redundant biases and fusion weights, converts its state dict, loads it strictly into our
config's detector and compares, in eval mode on the same images and in each precision
asked for: the raw head outputs (ours against effdet's, rows reordered to our anchors,
deltas and classes) and the final detections of effdet's ``DetBenchPredict``
post-processing against our head's ``predict_by_feat`` with the ``_hardnms`` test_cfg
(effdet's default post-processing), matched so that score ties cannot decide the verdict
(:func:`match_detections`). :func:`stage_diffs` locates a difference: backbone, extra
levels, every BiFPN cell, heads.

In float64 the two models agree to about 1e-13 (the conversion is exact); in float32 they
differ by the rounding of a different summation order, about as much as effdet's own
float32 outputs differ from its float64 ones.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config, ConfigDict
from mmengine.registry import init_default_scope

from torch.nn.modules.batchnorm import _BatchNorm

from mmplug_agg.testing.cli import CONFIG_DIR
from mmplug_agg.testing.parity import randomize_
from mmplug_agg.utils.conversion import SourceState
from mmplug_agg.utils.effdet_conversion import anchor_permutation, class_rows, convert_effdet

HARDNMS_CONFIG = CONFIG_DIR / 'efficientdet_d0_bifpn_coco_hardnms.py'


def _plain_bn(cfg):
    """SyncBN -> BN everywhere in a config dict (no process group in a parity check)."""
    if isinstance(cfg, dict):
        if cfg.get('type') == 'SyncBN':
            cfg['type'] = 'BN'
        for value in cfg.values():
            _plain_bn(value)
    elif isinstance(cfg, list):
        for value in cfg:
            _plain_bn(value)
    return cfg


def build_effdet(name: str, image_size: int, seed: int = 0, logit_std: float = 1.0,
                 top_logit: float = 2.0,
                 images: Optional[torch.Tensor] = None) -> torch.nn.Module:
    """effdet's ``name`` for ``image_size`` with every parameter and statistic random.

    The BN statistics are measured on ``images`` (default: 2 noise images), each BN on
    its actual input, then perturbed (mean by 0.1 std, variance by up to 10%), so that
    no mapping mistake hides behind an identity BN. Random weights otherwise shrink the
    activations layer by layer until every location looks alike and detections tie; and
    a deep random network normalised on some images amplifies the features of others
    tenfold, so compare on the same images. The class logits get the spread
    ``logit_std`` and the largest of them (on ``images``) is ``top_logit``, so that the
    detections' scores are not saturated (see below); the box deltas get std 0.3.
    """
    import effdet
    torch.manual_seed(seed)
    model = effdet.create_model(name, pretrained=False, pretrained_backbone=False,
                                image_size=(image_size, image_size))
    randomize_(model, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module_name, param in model.named_parameters():
            if module_name.endswith('edge_weights'):  # fusion weights start at 1
                param.copy_(torch.rand(param.shape, generator=gen) + 0.25)
            elif module_name.endswith('bias') and 'predict' not in module_name:
                param.add_(torch.randn(param.shape, generator=gen) * 0.05)
        norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]

        def measure(norm, args):
            # Measured on the actual input, already shaped by the perturbed layers above.
            mean, var = args[0].mean((0, 2, 3)), args[0].var((0, 2, 3))
            # Near-constant channels scaled up to unit variance would amplify rounding
            # errors layer after layer: no channel gets more gain than the median one.
            var = var.clamp(min=float(var.median()))
            n = norm.num_features
            norm.running_mean.copy_(mean + torch.randn(n, generator=gen) * 0.1 * var.sqrt())
            norm.running_var.copy_(var * (torch.rand(n, generator=gen) * 0.2 + 0.9))

        hooks = [norm.register_forward_pre_hook(measure) for norm in norms]
        if images is None:
            images = torch.randn(2, 3, image_size, image_size, generator=gen)
        cls_outs, box_outs = model.eval()(images)
        for hook in hooks:
            hook.remove()
        # Class logits of spread ``logit_std`` and box deltas of a trained model's size
        # (std 0.3: mmdet clamps |dw|, |dh| above 4.1, effdet does not).
        for net, outs, std in ((model.class_net, cls_outs, logit_std),
                               (model.box_net, box_outs, 0.3)):
            bias = net.predict.conv_pw.bias.view(1, -1, 1, 1)
            spread = torch.cat([(o - bias).flatten() for o in outs]).std()
            net.predict.conv_pw.weight.mul_(std / spread)
            if net is model.class_net:
                # The detections are the far tail of some 10^6 logits (up to 15 spreads
                # out): unshifted, their sigmoid scores sit within float32's resolution
                # of 1 and tie exactly, and ties leave the output order to each
                # implementation's sort. Shift every row's bias alike (their random
                # differences stay) so that the largest logit is ``top_logit``.
                top = max(float(((o - bias) * (std / spread) + bias).max()) for o in outs)
                net.predict.conv_pw.bias.sub_(top - top_logit)
    return model.eval()


def build_ours(config: str, num_classes: int) -> torch.nn.Module:
    init_default_scope('mmdet')
    from mmdet.registry import MODELS
    cfg = Config.fromfile(str(CONFIG_DIR / config) if '/' not in config else config)
    model_cfg = _plain_bn(cfg.model.to_dict())
    model_cfg['bbox_head']['num_classes'] = num_classes
    model_cfg['backbone'].pop('init_cfg', None)
    return MODELS.build(ConfigDict(model_cfg)).eval()


def _reorder(maps, perm, rows, per_anchor):
    index = torch.tensor([p * per_anchor + r for p in perm for r in rows])
    return [m[:, index] for m in maps]


def _level_diffs(got: Sequence[torch.Tensor], expected: Sequence[torch.Tensor]) -> Tuple[float,
                                                                                        float]:
    """Largest abs difference over the levels, and the largest one relative to its level's
    largest |expected| value."""
    worst_abs = worst_rel = 0.0
    for g, e in zip(got, expected):
        diff = float((g.double() - e.double()).abs().max())
        worst_abs = max(worst_abs, diff)
        worst_rel = max(worst_rel, diff / max(float(e.double().abs().max()), 1e-12))
    return worst_abs, worst_rel


def _box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of two xyxy boxes (1-d tensors)."""
    w = (torch.min(a[2], b[2]) - torch.max(a[0], b[0])).clamp(min=0)
    h = (torch.min(a[3], b[3]) - torch.max(a[1], b[1])).clamp(min=0)
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union.clamp(min=1e-12)


def match_detections(ref_boxes: torch.Tensor, ref_scores: torch.Tensor,
                     ref_labels: torch.Tensor, boxes: torch.Tensor, scores: torch.Tensor,
                     labels: torch.Tensor, score_tol: float, box_tol: float,
                     iou_thr: float = 0.5) -> Dict[str, float]:
    """Compare two images' detections without letting score ties decide the verdict.

    A detection of ours matches one of the reference (one to one, greedily in the
    reference's order) when the labels are equal, every box coordinate is within
    ``box_tol`` and the score within ``score_tol``. Two score-sorted lists can still
    differ legitimately where two candidates' scores are closer than the numerical
    noise: such candidates swap places in the output order, and where they overlap
    (same class, IoU above the NMS threshold ``iou_thr``) NMS keeps one or the other,
    and at the ``max_per_img`` cut either may be the last one in. So an unmatched
    detection is *tie-explained* if the other list has an unmatched detection of the
    same label overlapping it by more than ``iou_thr`` with a score within
    ``score_tol`` (an NMS flip), or its score is within ``score_tol`` of the other
    list's lowest score (the cut). Anything else is a real disagreement.

    Returns:
        dict: ``matched``, ``unmatched`` (both lists together), ``unexplained``
        (unmatched and not tie-explained), ``box_max_abs`` and ``score_max_abs`` over
        the matched pairs, ``same_order`` (1.0 if the labels agree position by
        position, the strictest reading; ties may legitimately break it),
        ``inversions`` (matched pairs in opposite order in the two lists) and
        ``inversions_beyond_tol`` (those whose reference scores differ by more than
        ``score_tol``: real order differences).
    """
    free = torch.ones(len(scores), dtype=torch.bool)
    ref_free = torch.ones(len(ref_scores), dtype=torch.bool)
    pairs = []
    box_diff = score_diff = 0.0
    for i in range(len(ref_scores)):
        ok = free & (labels == ref_labels[i]) & \
            ((scores - ref_scores[i]).abs() <= score_tol) & \
            ((boxes - ref_boxes[i]).abs().amax(dim=1) <= box_tol)
        if not ok.any():
            continue
        candidates = ok.nonzero().flatten()
        j = candidates[(boxes[candidates] - ref_boxes[i]).abs().amax(dim=1).argmin()]
        free[j] = ref_free[i] = False
        pairs.append((i, int(j)))
        box_diff = max(box_diff, float((boxes[j] - ref_boxes[i]).abs().max()))
        score_diff = max(score_diff, float((scores[j] - ref_scores[i]).abs()))

    def explained(k, own_boxes, own_scores, own_labels, other_boxes, other_scores,
                  other_labels, other_free):
        if len(other_scores) and own_scores[k] <= other_scores.min() + score_tol:
            return True
        for m in other_free.nonzero().flatten():
            if (other_labels[m] == own_labels[k]
                    and abs(float(other_scores[m] - own_scores[k])) <= score_tol
                    and float(_box_iou(own_boxes[k], other_boxes[m])) > iou_thr):
                return True
        return False

    unexplained = sum(
        not explained(k, ref_boxes, ref_scores, ref_labels, boxes, scores, labels, free)
        for k in ref_free.nonzero().flatten())
    unexplained += sum(
        not explained(k, boxes, scores, labels, ref_boxes, ref_scores, ref_labels, ref_free)
        for k in free.nonzero().flatten())
    same_order = len(labels) == len(ref_labels) and bool(torch.equal(labels, ref_labels))
    # Matched pairs in opposite order in the two lists; only scores closer than the
    # tolerance may swap.
    inversions = [(a, b) for a in pairs for b in pairs if a[0] < b[0] and a[1] > b[1]]
    beyond = sum(abs(float(ref_scores[a[0]] - ref_scores[b[0]])) > score_tol
                 for a, b in inversions)
    return dict(matched=float((~ref_free).sum()), unmatched=float(ref_free.sum() + free.sum()),
                unexplained=float(unexplained), box_max_abs=box_diff, score_max_abs=score_diff,
                same_order=float(same_order), inversions=float(len(inversions)),
                inversions_beyond_tol=float(beyond))


@torch.no_grad()
def check_effdet_parity(name: str, config: str, image_size: int, num_classes: int = 90,
                        seed: int = 0, batch: int = 2,
                        dtypes: Sequence[torch.dtype] = (torch.float32, ),
                        score_tol: float = 1e-4, box_tol: float = 1e-2,
                        stages: bool = False) -> Dict[str, object]:
    """Convert effdet's ``name`` into ``config`` and compare outputs; returns the numbers.

    Both models run in each of ``dtypes`` (the weights are drawn once, in float32, and
    converted again from the cast model, so the float64 run has exactly the float32
    weights). In float64 both compute the same function to rounding (about 1e-13), so
    any architecture or mapping difference shows there undisturbed by float32
    accumulation order; float32 is what users run.

    Returns:
        dict: for the first dtype, unprefixed: ``cls_max_abs``, ``box_max_abs`` (raw head
        outputs), ``cls_max_rel``, ``box_max_rel`` (the same relative to the level's
        largest |output|), ``max_abs_delta`` (largest box delta), and with the checkpoint's
        class count the final detections: ``num_dets``, ``det_matched``,
        ``det_unmatched``, ``det_unexplained`` (see :func:`match_detections`),
        ``det_inversions``, ``det_inversions_beyond_tol``, ``det_labels_equal`` (1.0 when
        every detection matched and no two swapped places unless tied), ``det_same_order``,
        ``det_box_max_abs``, ``det_score_max_abs``. Each further dtype adds its keys with
        the prefix ``'<dtype>_'`` (e.g. ``float64_cls_max_abs``); with several dtypes,
        ``effdet_float32_cls_err`` / ``..._box_err`` give the largest difference between
        effdet's own float32 and float64 raw outputs (its float32 rounding error),
        ``ours_float32_cls_err`` / ``..._box_err`` the same for our model, and
        with ``stages`` ``stages_<dtype>`` holds the per-stage lines of
        :func:`stage_diffs`.
    """
    gen = torch.Generator().manual_seed(seed + 2)
    image = torch.randn(batch, 3, image_size, image_size, generator=gen)
    theirs = build_effdet(name, image_size, seed, images=image)
    ours = build_ours(config, num_classes)
    generator = ours.bbox_head.prior_generator  # an EfficientDetAnchorGenerator
    perm = anchor_permutation(generator.aspects, generator.scales_per_octave)
    result: Dict[str, object] = {}
    raw = {}
    for index, dtype in enumerate(dtypes):
        theirs.to(dtype)
        ours.to(dtype)
        state = convert_effdet(SourceState(theirs.state_dict(), name=name),
                               num_classes=num_classes, aspects=generator.aspects,
                               num_scales=generator.scales_per_octave)
        ours.load_state_dict(state, strict=True)
        x = image.to(dtype)
        prefix = '' if index == 0 else f'{str(dtype).split(".")[-1]}_'
        if stages:
            result[f'stages_{str(dtype).split(".")[-1]}'] = stage_diffs(theirs, ours, x)
        single, raw[dtype] = _compare(theirs, ours, x, perm, num_classes, score_tol, box_tol)
        result.update({prefix + key: value for key, value in single.items()})
    if torch.float32 in raw and torch.float64 in raw:
        for key, part in (('cls', 0), ('box', 1)):
            result[f'effdet_float32_{key}_err'] = _level_diffs(raw[torch.float32][part],
                                                               raw[torch.float64][part])[0]
            result[f'ours_float32_{key}_err'] = _level_diffs(raw[torch.float32][part + 2],
                                                             raw[torch.float64][part + 2])[0]
    return result


def _compare(theirs, ours, image, perm, num_classes, score_tol, box_tol):
    """Raw outputs and final detections of both models on ``image`` (see above)."""
    ref_cls, ref_box = theirs(image)
    cls_scores, bbox_preds = ours.bbox_head(ours.extract_feat(image))
    source_classes = ref_cls[0].shape[1] // len(perm)
    exp_cls = _reorder(ref_cls, perm, class_rows(source_classes, num_classes), source_classes)
    exp_box = _reorder(ref_box, perm, [1, 0, 3, 2], 4)
    cls_abs, cls_rel = _level_diffs(cls_scores, exp_cls)
    box_abs, box_rel = _level_diffs(bbox_preds, exp_box)
    result = dict(cls_max_abs=cls_abs, box_max_abs=box_abs, cls_max_rel=cls_rel,
                  box_max_rel=box_rel,
                  max_abs_delta=max(float(b.abs().max()) for b in bbox_preds))
    raw = (ref_cls, ref_box, cls_scores, bbox_preds)
    if num_classes != source_classes:
        return result, raw

    from effdet.anchors import Anchors
    from effdet.bench import _batch_detection, _post_process
    batch, size = image.shape[0], image.shape[-1]
    # effdet's DetBenchPredict.forward on the outputs already computed (saves a forward).
    config = theirs.config
    top = _post_process(ref_cls, ref_box, num_levels=config.num_levels,
                        num_classes=config.num_classes,
                        max_detection_points=config.max_detection_points)
    # float32 sizes as effdet's loader gives them (float64 would promote its boxes).
    ref_dets = _batch_detection(batch, *top[:2], Anchors.from_config(config).boxes, *top[2:],
                                img_scale=torch.ones(batch),
                                img_size=torch.tensor([[size, size]] * batch).float(),
                                max_det_per_image=config.max_det_per_image,
                                soft_nms=config.soft_nms)
    metas = [dict(img_shape=(size, size), scale_factor=(1.0, 1.0))] * batch
    # mmcv's CPU NMS takes float32 only; effdet too decodes and runs NMS in float32.
    dets = ours.bbox_head.predict_by_feat([c.float() for c in cls_scores],
                                          [b.float() for b in bbox_preds],
                                          batch_img_metas=metas, cfg=hardnms_test_cfg(),
                                          rescale=False)
    totals = dict(matched=0.0, unmatched=0.0, unexplained=0.0, inversions=0.0,
                  inversions_beyond_tol=0.0, box_max_abs=0.0, score_max_abs=0.0,
                  same_order=1.0)
    num_dets = 0
    for ref, det in zip(ref_dets, dets):
        ref = ref[ref[:, 4] > 0].float()  # effdet pads to 100 rows with zeros
        num_dets += len(det)
        single = match_detections(ref[:, :4], ref[:, 4], ref[:, 5].long() - 1, det.bboxes,
                                  det.scores, det.labels, score_tol, box_tol)
        for key in ('matched', 'unmatched', 'unexplained', 'inversions',
                    'inversions_beyond_tol'):
            totals[key] += single[key]
        for key in ('box_max_abs', 'score_max_abs'):
            totals[key] = max(totals[key], single[key])
        totals['same_order'] = min(totals['same_order'], single['same_order'])
    result.update({f'det_{key}': value for key, value in totals.items()})
    result['det_labels_equal'] = float(totals['unmatched'] == 0
                                       and totals['inversions_beyond_tol'] == 0)
    result['num_dets'] = float(num_dets)
    return result, raw


@torch.no_grad()
def stage_diffs(theirs: torch.nn.Module, ours: torch.nn.Module,
                image: torch.Tensor) -> List[str]:
    """Max abs and relative difference, stage by stage, between effdet's model and ours.

    Stages: the three backbone outputs, the extra levels (P6, P7), every BiFPN cell's
    outputs, then the class and box nets, once on each model's own features and once
    both on effdet's features (which isolates the heads). Relative: the max abs
    difference divided by the stage's largest |effdet value|. One line per level.
    """
    lines = []

    def report(tag, got, expected, first=3):
        for level, (g, e) in enumerate(zip(got, expected), first):
            d = float((g.double() - e.double()).abs().max())
            scale = float(e.double().abs().max())
            lines.append(f'{tag} P{level} {tuple(e.shape[1:])}: max |effdet| {scale:.3g}, '
                         f'max abs diff {d:.2e}, relative {d / scale:.2e}')

    theirs_feats = list(theirs.backbone(image))
    ours_feats = list(ours.backbone(image))
    report('backbone', ours_feats, theirs_feats)
    for resample in theirs.fpn.resample.values():
        theirs_feats.append(resample(theirs_feats[-1]))
    for extra in ours.neck.extra_levels:
        ours_feats.append(extra(ours_feats[-1]))
    num_ins = len(ours.neck.in_channels)
    report('extra levels', ours_feats[num_ins:], theirs_feats[num_ins:], first=3 + num_ins)
    for index, (theirs_cell, ours_cell) in enumerate(zip(theirs.fpn.cell, ours.neck.cells)):
        theirs_feats = theirs_cell(list(theirs_feats))  # effdet's cell appends to its input
        ours_feats = ours_cell(list(ours_feats))
        report(f'BiFPN cell {index}', ours_feats, theirs_feats)
    generator = ours.bbox_head.prior_generator
    perm = anchor_permutation(generator.aspects, generator.scales_per_octave)
    classes = theirs.class_net.predict.conv_pw.out_channels // len(perm)
    exp_cls = _reorder(theirs.class_net(theirs_feats), perm, list(range(classes)), classes)
    exp_box = _reorder(theirs.box_net(theirs_feats), perm, [1, 0, 3, 2], 4)
    cls, box = ours.bbox_head(ours_feats)
    report('class net', cls, exp_cls)
    report('box net', box, exp_box)
    cls, box = ours.bbox_head(theirs_feats)
    report('class net, same input', cls, exp_cls)
    report('box net, same input', box, exp_box)
    return lines


def hardnms_test_cfg() -> ConfigDict:
    """The test_cfg of effdet's default post-processing (our ``_hardnms`` config)."""
    return Config.fromfile(str(HARDNMS_CONFIG)).model.test_cfg
