"""A backbone whose widths do not fit a neck's ``in_channels`` fails with one clear line.

The line names the neck, the first mismatched level, the expected and received
widths, and the argument to change. RecursiveFeaturePyramid knows its backbone's
widths when it is built and checks there; the necks check their inputs at the
first forward. ``tools/train.py`` turns the error into one ``error:`` line.
"""
import math
import re
import sys

import pytest
import torch

import mmplug_agg  # noqa: F401
from mmplug_agg.models.backbones import RecursiveFeaturePyramid
from mmplug_agg.models.layers.channel_check import ChannelMismatchError, check_in_channels
from mmplug_agg.models.necks import AugFPN, BiFPN, DLAUpNeck, HRNetV2pNeck
from mmplug_agg.testing.cli import CONFIG_DIR, TOOLS_DIR, last_line, quick_options, run_tool

WIDTHS = [8, 16, 32, 64]
WRONG = [8, 16, 24, 64]  # level 2 differs


def feature_maps(widths, height=64, width=96):
    return [torch.rand(1, c, math.ceil(height / s), math.ceil(width / s))
            for c, s in zip(widths, (4, 8, 16, 32))]


NECKS = {
    'AugFPN': lambda: AugFPN(WIDTHS, 16, num_outs=5),
    'BiFPN': lambda: BiFPN(WIDTHS, 16, num_outs=5, num_repeats=1),
    'DLAUpNeck': lambda: DLAUpNeck(WIDTHS),
    'HRNetV2pNeck': lambda: HRNetV2pNeck(WIDTHS, 16),
}


def assert_names_everything(message: str, owner: str, level: int, expected: int,
                            received: int, argument: str = 'in_channels') -> None:
    assert '\n' not in message
    assert message.startswith(owner)
    assert f'input level {level} has {received} channels' in message
    assert f'{argument}[{level}] is {expected}' in message
    assert f'set {argument}=' in message


@pytest.mark.parametrize('name', NECKS)
def test_neck_names_level_widths_and_argument_at_first_forward(name):
    neck = NECKS[name]()
    assert len(neck(feature_maps(WIDTHS))) > 0  # the right widths pass
    with pytest.raises(ChannelMismatchError) as error:
        neck(feature_maps(WRONG))
    assert isinstance(error.value, ValueError)
    assert_names_everything(str(error.value), f'{name} (neck)', 2, 32, 24)
    assert f'set in_channels={WRONG}' in str(error.value)


@pytest.mark.parametrize('name', ['AugFPN', 'BiFPN', 'DLAUpNeck', 'HRNetV2pNeck'])
def test_neck_names_the_level_count(name):
    # HRNetV2pNeck takes HRNet's branches and says so in its own words.
    message = (f'HRNetV2pNeck: in_channels={WIDTHS} lists 4 branches but the backbone gave 3 '
               'inputs' if name == 'HRNetV2pNeck' else
               f'expected 4 maps (in_channels={WIDTHS}), received 3 input levels')
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        NECKS[name]()(feature_maps(WIDTHS[:3]))
    assert '\n' not in str(error.value)


def test_every_neck_of_the_package_is_covered():
    from mmplug_agg.models import necks
    from torch import nn
    package_necks = {name for name in necks.__all__
                     if isinstance(getattr(necks, name), type)
                     and issubclass(getattr(necks, name), nn.Module)
                     and name != 'ResidualFeatureAugmentation'}  # a part of AugFPN
    assert package_necks == set(NECKS)


def test_rfp_checks_its_neck_against_the_backbone_when_built():
    with pytest.raises(ChannelMismatchError) as error:
        RecursiveFeaturePyramid(
            backbone=dict(type='ResNet', depth=18, base_channels=8),
            neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=32,
                      num_outs=5),
            aspp_out_channels=8)
    message = str(error.value)
    assert_names_everything(message, 'FPN (RecursiveFeaturePyramid neck', 0, 256, 8,
                            argument='neck.in_channels')
    assert 'set neck.in_channels=[8, 16, 32, 64]' in message


def test_check_accepts_widths_and_tensors():
    check_in_channels('X', [8, 16], [8, 16])
    check_in_channels('X', [torch.zeros(1, 8, 2, 2)], [8])
    with pytest.raises(ChannelMismatchError, match=r'^X: input level 1 has 12 channels'):
        check_in_channels('X', [8, 12], [8, 16])


@pytest.mark.slow
def test_train_tool_ends_with_one_error_line(run_dir):
    """The demo backbone (half-width ResNet-18: 32..256) under R50 AugFPN widths."""
    result = run_tool([TOOLS_DIR / 'train.py', CONFIG_DIR / 'augfpn_faster_rcnn_r50_demo.py',
                       '--work-dir', run_dir / 'work',
                       *quick_options('model.neck.in_channels=[256,512,1024,2048]')],
                      run_dir, launcher=(sys.executable, ))
    assert result.returncode == 1, result.stderr[-3000:]
    line = last_line(result.stderr)
    assert line.startswith('error: AugFPN (neck): input level 0 has 32 channels'), line
    assert 'set in_channels=[32, 64, 128, 256]' in line
    assert 'Traceback' not in result.stderr
