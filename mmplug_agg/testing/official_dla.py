"""Reference models in the key layout of two code bases that cannot be installed here.

* :class:`CenterNetDLA34` follows ``DLASeg`` of xingyizhou/CenterNet
  (``src/lib/models/networks/pose_dla_dcn.py``, the ``ctdet_coco_dla_2x`` model):
  ``base.*`` (DLA-34), ``dla_up.ida_<i>.{proj,up,node}_<k>``, ``ida_up.*`` and the
  ``hm``/``wh``/``reg`` heads, with DCNv2's ``DCN`` (``weight``, ``bias``,
  ``conv_offset_mask``) for every projection and node.
* :class:`UcbdriveDLAUp` follows ``DLASeg`` of ucbdrive/dla (``dla_up.py``,
  ``dla34up``/``dla102up``): ``base.*``, ``dla_up.ida_<i>.{proj,up,node}_<k>`` with
  1x1 projections only where widths differ and nodes over concatenations, ``fc.0``,
  and the fixed bilinear ``up`` deconv.

They were written from reading those files (module names, shapes and the order of
operations), not copied. The DLA trunk is timm's ``dla34``/``dla102``, whose keys are the
official ones; :func:`official_state_dict` adds what the official trunk also stores and
timm leaves out: the classifier ``base.fc`` and the projections that trees deeper than
one level build but never use. The deformable convs run mmcv's
``modulated_deform_conv2d``, which samples as DCNv2 does (offset channel ``2k`` is the
vertical and ``2k + 1`` the horizontal shift of kernel tap ``k``, then the ``k`` mask
channels); tests/tools/test_centernet2mmplug.py checks that against a direct
implementation of DCNv2's sampling.
"""
import math
from typing import Dict, List, Sequence

import torch
from torch import Tensor, nn


def _bilinear_(deconv: nn.ConvTranspose2d) -> nn.ConvTranspose2d:
    """The bilinear kernel both code bases give their depthwise upsampling deconvs."""
    size = deconv.weight.shape[-1]
    factor = math.ceil(size / 2)
    center = (2 * factor - 1 - factor % 2) / (2.0 * factor)
    ramp = 1 - (torch.arange(size, dtype=torch.float32) / factor - center).abs()
    with torch.no_grad():
        deconv.weight.copy_((ramp[:, None] * ramp[None, :]).expand_as(deconv.weight))
    return deconv


def _deconv(channels: int, factor: int) -> nn.ConvTranspose2d:
    return _bilinear_(nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor,
                                         padding=factor // 2, groups=channels, bias=False))


def dla_levels(trunk: nn.Module, x: Tensor) -> List[Tensor]:
    """The six level outputs (strides 1-32) of a timm DLA."""
    x = trunk.base_layer(x)
    levels = []
    for index in range(6):
        x = getattr(trunk, f'level{index}')(x)
        levels.append(x)
    return levels


class DCNv2Layout(nn.Module):
    """DCNv2's ``DCN`` (3x3, stride 1, one deformable group): its parameters and forward.

    ``conv_offset_mask`` gives ``3 * 9`` channels: the first ``2 * 9`` are the offsets, the
    last 9 the mask logits (``chunk(3)`` and re-concatenating the first two chunks is the
    identity on the offsets).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.uniform_(self.weight, -1 / (in_channels * 9)**0.5, 1 / (in_channels * 9)**0.5)
        self.conv_offset_mask = nn.Conv2d(in_channels, 27, 3, padding=1)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, x: Tensor) -> Tensor:
        from mmcv.ops import modulated_deform_conv2d
        first, second, mask = torch.chunk(self.conv_offset_mask(x), 3, dim=1)
        offset = torch.cat([first, second], dim=1)
        return modulated_deform_conv2d(x, offset, mask.sigmoid(), self.weight, self.bias,
                                       1, 1, 1, 1, 1)


class _CenterNetDeformConv(nn.Module):
    """``DeformConv``: DCN, then ``actf`` = (BN, ReLU)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = DCNv2Layout(in_channels, out_channels)
        self.actf = nn.Sequential(nn.BatchNorm2d(out_channels), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.actf(self.conv(x))


class _CenterNetIDAUp(nn.Module):
    """``IDAUp(o, channels, up_f)``: inputs 1.. are projected, upsampled and summed in."""

    def __init__(self, out_channels: int, channels: Sequence[int], factors: Sequence[int]):
        super().__init__()
        for index in range(1, len(channels)):
            setattr(self, f'proj_{index}', _CenterNetDeformConv(channels[index], out_channels))
            setattr(self, f'up_{index}', _deconv(out_channels, int(factors[index])))
            setattr(self, f'node_{index}', _CenterNetDeformConv(out_channels, out_channels))

    def forward(self, layers: List[Tensor], start: int, end: int) -> None:
        """Updates ``layers[start + 1:end]`` in place, as the original does."""
        for index in range(start + 1, end):
            k = index - start
            up = getattr(self, f'up_{k}')(getattr(self, f'proj_{k}')(layers[index]))
            layers[index] = getattr(self, f'node_{k}')(up + layers[index - 1])


class CenterNetDLA34(nn.Module):
    """CenterNet's ``DLASeg('dla34', heads, down_ratio=4, last_level=5, head_conv=256)``.

    Args:
        num_classes: Channels of ``hm`` (80 for COCO).
        channels: DLA level widths; thinner than DLA-34's for fast tests is not
            possible with timm's trunk, so this is DLA-34's (only the trunk is fixed).
        head_conv: Hidden width of the heads (256 for DLA in CenterNet).
    """

    def __init__(self, num_classes: int = 80, head_conv: int = 256) -> None:
        super().__init__()
        import timm
        self.base = timm.create_model('dla34', pretrained=False)
        channels = [16, 32, 64, 128, 256, 512]
        first = 2
        used = channels[first:]
        scales = [2**i for i in range(len(used))]
        in_channels = list(used)
        # DLAUp(startp=2, channels[2:], scales): one IDAUp per level from deep to shallow.
        self.dla_up = nn.Module()
        for i in range(len(used) - 1):
            j = len(used) - 2 - i
            factors = [s // scales[j] for s in scales[j:]]
            setattr(self.dla_up, f'ida_{i}', _CenterNetIDAUp(used[j], in_channels[j:], factors))
            scales[j + 1:] = [scales[j]] * (len(scales) - j - 1)
            in_channels[j + 1:] = [used[j]] * (len(in_channels) - j - 1)
        self.ida_up = _CenterNetIDAUp(used[0], channels[first:5],
                                      [2**i for i in range(5 - first)])
        for name, out in (('hm', num_classes), ('wh', 2), ('reg', 2)):
            head = nn.Sequential(nn.Conv2d(used[0], head_conv, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(head_conv, out, 1))
            setattr(self, name, head)
        self.first_level = first

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        layers = dla_levels(self.base, x)
        # DLAUp.forward: each IDAUp rewrites the deeper part of the list in place; the
        # outputs are the last entry after every step, finest first.
        outs = [layers[-1]]
        for i in range(len(layers) - self.first_level - 1):
            getattr(self.dla_up, f'ida_{i}')(layers, len(layers) - i - 2, len(layers))
            outs.insert(0, layers[-1])
        y = [outs[i].clone() for i in range(5 - self.first_level)]
        self.ida_up(y, 0, len(y))
        return {name: getattr(self, name)(y[-1]) for name in ('hm', 'wh', 'reg')}


class _UcbdriveIDAUp(nn.Module):
    """``IDAUp(node_kernel=3, out_dim, channels, up_factors)`` of ucbdrive/dla."""

    def __init__(self, out_channels: int, channels: Sequence[int], factors: Sequence[int]):
        super().__init__()
        for index, (width, factor) in enumerate(zip(channels, factors)):
            proj = nn.Identity() if width == out_channels else nn.Sequential(
                nn.Conv2d(width, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
                nn.ReLU())
            setattr(self, f'proj_{index}', proj)
            setattr(self, f'up_{index}',
                    nn.Identity() if factor == 1 else _deconv(out_channels, int(factor)))
        for index in range(1, len(channels)):
            setattr(self, f'node_{index}', nn.Sequential(
                nn.Conv2d(2 * out_channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels), nn.ReLU()))
        self.num_inputs = len(channels)

    def forward(self, layers: Sequence[Tensor]):
        layers = [getattr(self, f'up_{i}')(getattr(self, f'proj_{i}')(x))
                  for i, x in enumerate(layers)]
        x, nodes = layers[0], []
        for index in range(1, self.num_inputs):
            x = getattr(self, f'node_{index}')(torch.cat([x, layers[index]], dim=1))
            nodes.append(x)
        return x, nodes


class UcbdriveDLAUp(nn.Module):
    """ucbdrive/dla's ``DLASeg(base, classes, down_ratio=2)`` (``dla34up``, ``dla102up``)."""

    CHANNELS = {'dla34': [16, 32, 64, 128, 256, 512], 'dla102': [16, 32, 128, 256, 512, 1024]}

    def __init__(self, arch: str = 'dla34', num_classes: int = 19) -> None:
        super().__init__()
        import timm
        self.base = timm.create_model(arch, pretrained=False)
        used = self.CHANNELS[arch][1:]
        scales = [2**i for i in range(len(used))]
        in_channels = list(used)
        self.dla_up = nn.Module()
        for i in range(len(used) - 1):
            j = len(used) - 2 - i
            factors = [s // scales[j] for s in scales[j:]]
            setattr(self.dla_up, f'ida_{i}', _UcbdriveIDAUp(used[j], in_channels[j:], factors))
            scales[j + 1:] = [scales[j]] * (len(scales) - j - 1)
            in_channels[j + 1:] = [used[j]] * (len(in_channels) - j - 1)
        self.num_stages = len(used) - 1
        self.fc = nn.Sequential(nn.Conv2d(used[0], num_classes, 1))
        self.up = _deconv(num_classes, 2)
        self.up.weight.requires_grad_(False)

    def forward(self, x: Tensor):
        """(log-probabilities at the input size, logits at stride 2), as the original."""
        layers = dla_levels(self.base, x)[1:]
        for i in range(self.num_stages):
            out, nodes = getattr(self.dla_up, f'ida_{i}')(layers[-i - 2:])
            layers[-i - 1:] = nodes
        logits = self.fc(out)
        return torch.log_softmax(self.up(logits), dim=1), logits


def official_state_dict(model: nn.Module) -> Dict[str, Tensor]:
    """``model.state_dict()`` plus the trunk tensors the official DLA stores and timm does not.

    The official ``DLA`` always has its classifier ``fc`` (CenterNet's trunk gets one
    when it loads ImageNet weights), and every ``Tree`` whose input and output widths
    differ builds ``project`` even when it has subtrees, which then never use it.
    """
    state = dict(model.state_dict())
    gen = torch.Generator().manual_seed(0)
    base = model.base
    for name, tree in base.named_modules():
        if type(tree).__name__ != 'DlaTree' or tree.root is not None:
            continue
        leaf = tree
        while leaf.root is None:
            leaf = leaf.tree1
        if not isinstance(leaf.project, nn.Sequential):
            continue  # same widths: no projection anywhere in this tree
        out_channels, in_channels = leaf.project[0].weight.shape[:2]
        prefix = f'base.{name}.project.'
        state[prefix + '0.weight'] = torch.randn(out_channels, in_channels, 1, 1, generator=gen)
        state[prefix + '1.weight'] = torch.rand(out_channels, generator=gen)
        state[prefix + '1.bias'] = torch.randn(out_channels, generator=gen)
        state[prefix + '1.running_mean'] = torch.randn(out_channels, generator=gen)
        state[prefix + '1.running_var'] = torch.rand(out_channels, generator=gen) + 0.5
        state[prefix + '1.num_batches_tracked'] = torch.tensor(0)
    if 'base.fc.weight' not in state:
        state['base.fc.weight'] = torch.randn(1000, base.num_features, 1, 1, generator=gen)
        state['base.fc.bias'] = torch.randn(1000, generator=gen)
    return state
