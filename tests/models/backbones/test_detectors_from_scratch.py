"""DetectoRS (RFP + SAC + ConvAWS) trains from scratch instead of crashing the process.

Without a checkpoint, ConvAWS standardises every filter to unit variance (its
rescaling buffers stay 1 and 0), so with BN in eval mode (the config's
``norm_eval=True``) activations grew by about sqrt(fan_in) per conv; at 160x160
the first SAC input reached 6.6e10, and mmcv's CPU deformable convolution backward
then died with a segmentation fault. ``RecursiveFeaturePyramid`` now gives
weight-standardised convs the scale of their initialiser. The real config's
model (full-width R50, deformable SAC, Cascade R-CNN) runs one training step in a
subprocess, so a crash fails the test instead of killing the test session.
"""
import json
import subprocess
import sys

import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.conv_ws import ConvAWS2d

import mmplug_agg  # noqa: F401
from mmplug_agg.models.backbones import RecursiveFeaturePyramid
from mmplug_agg.models.backbones.recursive_feature_pyramid import \
    calibrate_weight_standardisation
from mmplug_agg.testing.cli import CONFIG_DIR, REPO_ROOT

STEP = '''
import json, sys
import torch
from mmengine.config import Config
from mmengine.registry import OPTIM_WRAPPERS, init_default_scope
from mmcv.ops import SAConv2d
import mmplug_agg
from mmplug_agg.registry import MODEL_REGISTRIES
from mmplug_agg.testing import make_det_batch

torch.manual_seed(0)
cfg = Config.fromfile(sys.argv[1])
cfg.model.backbone.backbone.init_cfg = None  # no ImageNet checkpoint
init_default_scope('mmdet')
model = MODEL_REGISTRIES['mmdet'].build(cfg.model)
model.init_weights()
model.train()
largest = [0.0]
for module in model.modules():
    if isinstance(module, SAConv2d):
        module.register_forward_hook(
            lambda m, i, o: largest.append(float(i[0].detach().abs().max())))
wrapper = OPTIM_WRAPPERS.build(
    dict(type='OptimWrapper', optimizer=torch.optim.SGD(model.parameters(), lr=0.02)))
log_vars = model.train_step(make_det_batch(1, (160, 160), 80, seed=0), wrapper)
print(json.dumps(dict(losses={k: float(v) for k, v in log_vars.items()},
                      largest_sac_input=max(largest))))
'''


def test_from_scratch_detectors_cascade_trains_one_step_in_a_subprocess():
    config = CONFIG_DIR / 'detectors_cascade_rcnn_r50.py'
    result = subprocess.run([sys.executable, '-c', STEP, str(config)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300,
                            env={'OMP_NUM_THREADS': '1', 'PATH': '/usr/bin:/bin'})
    # A segmentation fault shows as returncode -11 with nothing printed.
    assert result.returncode == 0, (result.returncode, result.stderr[-3000:])
    report = json.loads(result.stdout.strip().splitlines()[-1])
    losses = report['losses']
    assert all(abs(v) < 100 for v in losses.values()), losses
    assert 0 < losses['loss'] and losses['loss_rpn_cls'] < 2
    # Kaiming-scaled activations: the overflowing run had 6.6e10 here.
    assert 0 < report['largest_sac_input'] < 1e4, report


def test_calibrated_convaws_computes_with_its_weights_as_they_are():
    torch.manual_seed(0)
    conv = ConvAWS2d(16, 8, 3, padding=1)
    torch.nn.init.kaiming_normal_(conv.weight, mode='fan_out', nonlinearity='relu')
    x = torch.randn(2, 16, 9, 11)
    assert conv(x).std() > 5 * F.conv2d(x, conv.weight, conv.bias, padding=1).std()
    calibrate_weight_standardisation(conv)
    torch.testing.assert_close(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1),
                               atol=1e-4, rtol=1e-4)


def test_rfp_with_convaws_and_bn_in_eval_mode_stays_finite_from_scratch():
    torch.manual_seed(0)
    backbone = dict(type='ResNet', depth=50, base_channels=16, norm_eval=True,
                    conv_cfg=dict(type='ConvAWS'))
    neck = dict(type='FPN', in_channels=[64, 128, 256, 512], out_channels=32, num_outs=5)
    model = RecursiveFeaturePyramid(backbone, neck, aspp_out_channels=8)
    model.init_weights()
    for replica in (model.backbone, *model.rfp_backbones):
        for conv in replica.modules():
            if isinstance(conv, ConvAWS2d):  # scale of mmdet's Kaiming init, not 1
                assert conv.weight_gamma.max() < 0.5
    model.train()
    outs = model(torch.randn(1, 3, 96, 128))
    assert all(torch.isfinite(o).all() and o.abs().max() < 1e4 for o in outs)
