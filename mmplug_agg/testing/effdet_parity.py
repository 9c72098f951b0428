"""End-to-end parity of a converted effdet EfficientDet with the original (tests, benchmarks).

:func:`check_effdet_parity` builds an effdet model with random weights, BN statistics,
redundant biases and fusion weights, converts its state dict, loads it strictly into our
config's detector and compares, in eval mode on one image: the raw head outputs (ours
against effdet's, rows reordered to our anchors, deltas and classes) and the final
detections of effdet's ``DetBenchPredict`` against our head's ``predict_by_feat`` with the
``_hardnms`` test_cfg (effdet's default post-processing).
"""
from typing import Dict, Optional

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
                 images: Optional[torch.Tensor] = None) -> torch.nn.Module:
    """effdet's ``name`` for ``image_size`` with every parameter and statistic random.

    The BN statistics are measured on ``images`` (default: 2 noise images), each BN on
    its actual input, then perturbed (mean by 0.1 std, variance by up to 10%), so that
    no mapping mistake hides behind an identity BN. Random weights otherwise shrink the
    activations layer by layer until every location looks alike and detections tie; and
    a deep random network normalised on some images amplifies the features of others
    tenfold, so compare on the same images.
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
        # Class logits of spread ``logit_std`` (scores neither tied nor saturated, so the NMS
        # order is the conversion's, not float rounding's) and box deltas of a trained
        # model's size (std 0.3: mmdet clamps |dw|, |dh| above 4.1, effdet does not).
        for net, outs, std in ((model.class_net, cls_outs, logit_std),
                               (model.box_net, box_outs, 0.3)):
            bias = net.predict.conv_pw.bias.view(1, -1, 1, 1)
            spread = torch.cat([(o - bias).flatten() for o in outs]).std()
            net.predict.conv_pw.weight.mul_(std / spread)
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


@torch.no_grad()
def check_effdet_parity(name: str, config: str, image_size: int, num_classes: int = 90,
                        seed: int = 0, batch: int = 2) -> Dict[str, float]:
    """Convert effdet's ``name`` into ``config`` and compare outputs; returns the numbers.

    Returns:
        dict: ``cls_max_abs``, ``box_max_abs`` (raw head outputs), ``det_box_max_abs``,
        ``det_score_max_abs`` (final detections, same order), ``det_labels_equal`` (1.0 or
        0.0), ``num_dets`` and ``max_abs_delta`` (largest box delta among all outputs).
    """
    gen = torch.Generator().manual_seed(seed + 2)
    image = torch.randn(batch, 3, image_size, image_size, generator=gen)
    theirs = build_effdet(name, image_size, seed, images=image)
    ours = build_ours(config, num_classes)
    generator = ours.bbox_head.prior_generator  # an EfficientDetAnchorGenerator
    state = convert_effdet(SourceState(theirs.state_dict(), name=name), num_classes=num_classes,
                           aspects=generator.aspects, num_scales=generator.scales_per_octave)
    ours.load_state_dict(state, strict=True)

    ref_cls, ref_box = theirs(image)
    cls_scores, bbox_preds = ours.bbox_head(ours.extract_feat(image))

    perm = anchor_permutation(generator.aspects, generator.scales_per_octave)
    source_classes = ref_cls[0].shape[1] // len(perm)
    exp_cls = _reorder(ref_cls, perm, class_rows(source_classes, num_classes), source_classes)
    exp_box = _reorder(ref_box, perm, [1, 0, 3, 2], 4)
    result = dict(
        cls_max_abs=max(float((a - b).abs().max()) for a, b in zip(cls_scores, exp_cls)),
        box_max_abs=max(float((a - b).abs().max()) for a, b in zip(bbox_preds, exp_box)),
        max_abs_delta=max(float(b.abs().max()) for b in bbox_preds))
    if num_classes != source_classes:
        return result

    import effdet
    bench = effdet.DetBenchPredict(theirs).eval()
    img_info = dict(img_scale=torch.ones(batch),
                    img_size=torch.tensor([[image_size, image_size]] * batch).float())
    ref_dets = bench(image, img_info=img_info)
    test_cfg = hardnms_test_cfg()
    metas = [dict(img_shape=(image_size, image_size), scale_factor=(1.0, 1.0))] * batch
    dets = ours.bbox_head.predict_by_feat(cls_scores, bbox_preds, batch_img_metas=metas,
                                          cfg=test_cfg, rescale=False)
    box_diff = score_diff = 0.0
    labels_equal = True
    num_dets = 0
    for ref, det in zip(ref_dets, dets):
        ref = ref[ref[:, 4] > 0]  # effdet pads to 100 rows with zeros
        num_dets += len(det)
        if len(ref) != len(det):
            return dict(result, det_count_mismatch=float(len(ref) - len(det)))
        box_diff = max(box_diff, float((ref[:, :4] - det.bboxes).abs().max()))
        score_diff = max(score_diff, float((ref[:, 4] - det.scores).abs().max()))
        labels_equal &= bool(torch.equal(ref[:, 5].long() - 1, det.labels))
    return dict(result, det_box_max_abs=box_diff, det_score_max_abs=score_diff,
                det_labels_equal=float(labels_equal), num_dets=float(num_dets))


def hardnms_test_cfg() -> ConfigDict:
    """The test_cfg of effdet's default post-processing (our ``_hardnms`` config)."""
    return Config.fromfile(str(HARDNMS_CONFIG)).model.test_cfg
