"""ShapeAdaptorResNet / ShapeAdaptorDLA against a reference written here from the paper's
equations (outputs, planned sizes, alpha gradients), in every mode; parameter counts; the
hard cap; gradients everywhere; host syncs per forward; bad configs."""
import contextlib
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import init_default_scope
from torch.utils._python_dispatch import TorchDispatchMode

import mmplug_agg  # noqa: F401
from mmplug_agg.models.backbones import ShapeAdaptorDLA, ShapeAdaptorResNet, ShapeAdaptorResNeXt
from mmplug_agg.registry import MODEL_REGISTRIES
from mmplug_agg.testing import make_seg_batch
from mmplug_agg.testing.cli import CONFIG_DIR


@pytest.fixture(autouse=True, scope='module')
def single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def mmdet_scope():
    init_default_scope('mmdet')


TINY_RESNET = dict(depth=18, base_channels=4, stem_channels=4, norm_eval=False, init_cfg=None)
TINY_DLA = dict(channels=(4, 4, 8, 8, 16, 16), init_cfg=None)
MODES = [
    dict(),
    dict(mode='autotl'),
    dict(mode='autosc'),
    dict(learnable_stem=False),
    dict(adaptor_type='pool'),
    dict(adaptor_type='pool', mode='autotl'),
]


# --- the reference, from the paper's equations (Liu et al., ECCV 2020, Sec. 3 and Fig. 2) ---
def ref_bn(bn, x):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0., bn.eps)


def ref_conv(conv, x, stride=None):
    stride = conv.stride if stride is None else stride
    return F.conv2d(x, conv.weight, None, stride, conv.padding)


def ref_resize(x, size):
    return F.interpolate(x, size=size, mode='bilinear', align_corners=True)


class PaperResNet18:
    """ResNet-18 with shape adaptors, from the paper's equations, on ``model``'s weights.

    ``s = r1 + (r2 - r1) sigma(alpha)``; an adaptor mixes ``(1 - sigma) G(F1) + sigma G(F2)``
    (residual cells: ``2 (1 - sigma) G(shortcut, stride 2) + 2 sigma G(weights, stride 1)``
    then ReLU); ``G`` is bilinear with aligned corners to ``int(dim * s)`` (local) or
    ``round(dim)`` of the running real dimension (global, with human strides as 0.5);
    a hard cap multiplies every ``s`` by ``p = (limit / dim_true) ** (1 / n)``.
    """

    def __init__(self, model, layout):
        self.m, self.layout = model, layout  # layout: stem adaptors, adaptor blocks, strides

    def sigma(self, alpha, p):
        return torch.sigmoid(alpha) * p + 0.5 / 0.5 * (p - 1)

    def next_dim(self, dim, s):
        if self.layout['rule'] == 'local':
            return [int(d * s) for d in dim[0]], None
        real = [d * s for d in dim[1]]
        return [round(r) for r in real], real

    def __call__(self, x, alphas):
        m, lay = self.m, self.layout
        s_true = [0.5 + 0.5 * torch.sigmoid(a).item() for a in alphas]
        side = max(x.shape[-2:]) * math.prod(s_true) * 0.5**lay['human_strides']
        limit, n = lay.get('limit'), len(alphas)
        p = (limit / side)**(1 / n) if limit is not None and side > limit else 1.0
        dims = ([x.shape[-2], x.shape[-1]], [float(x.shape[-2]), float(x.shape[-1])])
        sizes, outs, k = [], [], 0
        x = F.relu(ref_bn(m.norm1, ref_conv(m.conv1, x)))
        if lay['human_stem']:
            x = F.max_pool2d(x, 3, 2, 1)
            dims = ([math.ceil(d / 4) for d in dims[0]], [d / 4 for d in dims[1]])
        for _ in range(lay['stem_adaptors']):
            s = (0.5 + 0.5 * torch.sigmoid(alphas[k]).item()) * p
            dims = self.next_dim(dims, s) if lay['rule'] == 'global' else (
                self.next_dim(dims, s)[0], None)
            size = tuple(dims[0])
            sig = self.sigma(alphas[k], p)
            x = (1 - sig) * ref_resize(F.max_pool2d(x, 2, 2, ceil_mode=True), size) + \
                sig * ref_resize(x, size)
            sizes.append(size)
            k += 1
        blocks = [b for name in m.res_layers for b in getattr(m, name)]
        for j, block in enumerate(blocks):
            if j in lay['human_stride_blocks']:
                dims = ([math.ceil(d / 2) for d in dims[0]],
                        [d / 2 for d in dims[1]] if dims[1] else None)
            if j in lay['pool_before']:
                s = (0.5 + 0.5 * torch.sigmoid(alphas[k]).item()) * p
                dims = self.next_dim(dims, s) if lay['rule'] == 'global' else (
                    self.next_dim(dims, s)[0], None)
                size, sig = tuple(dims[0]), self.sigma(alphas[k], p)
                x = (1 - sig) * ref_resize(F.max_pool2d(x, 2, 2, ceil_mode=True), size) + \
                    sig * ref_resize(x, size)
                sizes.append(size)
                k += 1
            stride = 2 if j in lay['human_stride_blocks'] else 1
            out = F.relu(ref_bn(block.norm1, ref_conv(block.conv1, x, stride)))
            out = ref_bn(block.norm2, ref_conv(block.conv2, out))
            if j in lay['adaptor_blocks']:
                s = (0.5 + 0.5 * torch.sigmoid(alphas[k]).item()) * p
                dims = self.next_dim(dims, s) if lay['rule'] == 'global' else (
                    self.next_dim(dims, s)[0], None)
                size, sig = tuple(dims[0]), self.sigma(alphas[k], p)
                conv, bn = block.downsample[0], block.downsample[1]
                short = ref_bn(bn, ref_conv(conv, x, 2))
                x = F.relu(2 * (1 - sig) * ref_resize(short, size)
                           + 2 * sig * ref_resize(out, size))
                sizes.append(size)
                k += 1
            else:
                short = x if block.downsample is None else ref_bn(
                    block.downsample[1], ref_conv(block.downsample[0], x, stride))
                x = F.relu(out + short)
            if j in (1, 3, 5, 7):
                outs.append(x)
        return outs, sizes


LAYOUTS = {  # where the paper (official code) puts the adaptors in a ResNet-18
    'standard': dict(kwargs=dict(), stem_adaptors=1, adaptor_blocks=(0, 1, 3, 4, 5),
                     pool_before=(), human_stem=False, human_stride_blocks=(), rule='local'),
    'standard-capped': dict(kwargs=dict(limit_dim=5), limit=5, stem_adaptors=1,
                            adaptor_blocks=(0, 1, 3, 4, 5), pool_before=(), human_stem=False,
                            human_stride_blocks=(), rule='local'),
    'autotl': dict(kwargs=dict(mode='autotl'), stem_adaptors=2, adaptor_blocks=(2, 4, 6),
                   pool_before=(), human_stem=False, human_stride_blocks=(), rule='local'),
    'autosc': dict(kwargs=dict(mode='autosc'), stem_adaptors=0, adaptor_blocks=(1, 3, 5),
                   pool_before=(), human_stem=True, human_stride_blocks=(2, 4, 6),
                   rule='global'),
    'pool': dict(kwargs=dict(adaptor_type='pool'), stem_adaptors=0, adaptor_blocks=(),
                 pool_before=(2, 3, 5, 6), human_stem=True, human_stride_blocks=(),
                 rule='local'),
}


@pytest.mark.parametrize('name', list(LAYOUTS))
def test_matches_the_paper_reference(name):
    layout = dict(LAYOUTS[name])
    layout['human_strides'] = (2 if layout['human_stem'] else 0) + len(
        layout['human_stride_blocks'])
    if name == 'pool':  # the fixed stem's conv stride and max-pool are human strides too
        layout['human_stem'] = True
    torch.manual_seed(0)
    model = ShapeAdaptorResNet(**TINY_RESNET, **layout['kwargs']).eval()
    with torch.no_grad():  # distinct alphas: every adaptor's own factor matters
        for k, adaptor in enumerate(model.adaptors):
            adaptor.alpha.fill_(-0.5 + 0.4 * k)
        for module in model.modules():  # non-trivial BN statistics
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
                module.bias.uniform_(0.0, 0.3)  # keeps the tiny network's ReLUs alive
    assert model.adaptor_positions == (layout['adaptor_blocks'] or layout['pool_before'])
    x = torch.rand(2, 3, 97, 83)
    outs = model(x)
    reference = PaperResNet18(model, layout)
    alphas = [a.alpha for a in model.adaptors]
    ref_outs, ref_sizes = reference(x, alphas)
    assert [tuple(s) for s in model.last_plan['sizes']] == ref_sizes
    for out, ref in zip(outs, ref_outs):
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    weights = [torch.rand_like(o) for o in outs]
    grads = torch.autograd.grad(sum((o * w).sum() for o, w in zip(outs, weights)), alphas)
    ref_grads = torch.autograd.grad(sum((o * w).sum() for o, w in zip(ref_outs, weights)),
                                    alphas)
    for grad, ref in zip(grads, ref_grads):
        torch.testing.assert_close(grad, ref, rtol=1e-4, atol=1e-5)
        assert ref.abs() > 0


def plain_resnet_params(depth):
    plain = MODEL_REGISTRIES['mmdet'].build(dict(type='ResNet', depth=depth, init_cfg=None))
    return sum(p.numel() for p in plain.parameters())


@pytest.mark.parametrize('depth', [18, 50])
def test_parameter_counts(depth):
    """Plain ResNet + one alpha per adaptor + the strided shortcuts the paper adds."""
    plain = plain_resnet_params(depth)
    for kwargs in MODES:
        model = ShapeAdaptorResNet(depth=depth, init_cfg=None, **kwargs)
        alphas = len(model.adaptors)
        added = 0
        blocks = [b for name in model.res_layers for b in getattr(model, name)]
        starts = set(model._stage_starts)
        for j in model.adaptor_positions if model.adaptor_type == 'residual' else ():
            if j not in starts or (depth == 18 and j == 0):  # no projection there before
                added += sum(p.numel() for p in blocks[j].downsample.parameters())
        total = sum(p.numel() for p in model.parameters())
        assert total == plain + alphas + added, kwargs
        if kwargs.get('mode') == 'autotl':
            assert added == 0  # AutoTL only re-strides the ImageNet network's projections


@pytest.mark.parametrize('kwargs', MODES + [dict(deep_stem=True, avg_down=True),
                                            dict(depth=50, base_channels=4)],
                         ids=lambda k: ','.join(f'{a}={b}' for a, b in k.items()) or 'default')
def test_every_parameter_gets_a_gradient_in_every_mode(kwargs):
    torch.manual_seed(0)
    model = ShapeAdaptorResNet(**{**TINY_RESNET, 'limit_dim': 4, **kwargs}).train()
    sum(out.mean() for out in model(torch.rand(2, 3, 97, 83))).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    assert all(a.alpha.grad.abs() > 0 for a in model.adaptors)


@pytest.mark.parametrize('kwargs', [dict(), dict(mode='autotl')], ids=['standard', 'autotl'])
def test_resnext_follows(kwargs):
    from mmdet.models.backbones import ResNeXt
    common = dict(depth=50, groups=4, base_width=4, base_channels=8, init_cfg=None)
    model = ShapeAdaptorResNeXt(**common, **kwargs)
    assert model.layer2[0].conv2.groups == 4
    sum(o.mean() for o in model(torch.rand(2, 3, 97, 83))).backward()
    assert not [n for n, p in model.named_parameters() if p.grad is None]
    if kwargs:  # AutoTL: the plain ResNeXt plus five alphas
        plain = sum(p.numel() for p in ResNeXt(**common).parameters())
        assert sum(p.numel() for p in model.parameters()) == plain + 5


def test_dla_gradients_sizes_and_autotl():
    torch.manual_seed(0)
    for mode in ('standard', 'autotl'):
        model = ShapeAdaptorDLA(mode=mode, limit_dim=4, **TINY_DLA)
        sum(o.mean() for o in model(torch.rand(2, 3, 61, 45))).backward()
        assert not [n for n, p in model.named_parameters() if p.grad is None]
    assert model.learned_factors() == pytest.approx([0.55] * 5, abs=1e-3)
    assert model.adaptor_positions == (1, 2, 3, 4, 5)


@pytest.mark.parametrize('kwargs', MODES + [dict(size_rule='global')],
                         ids=lambda k: ','.join(f'{a}={b}' for a, b in k.items()) or 'default')
def test_hard_cap_holds_at_any_alpha(kwargs):
    limit = 6
    model = ShapeAdaptorResNet(**TINY_RESNET, limit_dim=limit, **kwargs).eval()
    uncapped = ShapeAdaptorResNet(**TINY_RESNET, **kwargs).eval()
    generator = torch.Generator().manual_seed(0)
    for trial in range(12):
        alphas = torch.empty(len(model.adaptors)).uniform_(-4, 4, generator=generator)
        if trial == 0:
            alphas.fill_(6.0)  # every factor near 1: the natural map is far above the limit
        for net in (model, uncapped):
            with torch.no_grad():
                for adaptor, alpha in zip(net.adaptors, alphas):
                    adaptor.alpha.fill_(alpha)
        size = (97, 131) if trial % 2 else (64, 40)
        with torch.no_grad():
            final = model(torch.rand(1, 3, *size))[-1].shape[-2:]
            natural = uncapped(torch.rand(1, 3, *size))[-1].shape[-2:]
        assert max(final) <= limit, (trial, final)
        fixed = math.prod(v for k, v in uncapped._steps if k == 'stride')
        if max(size) * math.prod(uncapped.learned_factors()) / fixed <= limit:
            assert final == natural  # below the limit the cap changes nothing
    assert model.last_plan['scale'] <= 1.0


class HostReads(TorchDispatchMode):
    """Counts device-to-host reads: ``.item()``/``float()``/``bool()`` (``_local_scalar_dense``),
    data-dependent shapes (``nonzero``...) and ``tolist()``/``numpy()``."""

    SYNC_OPS = ('aten._local_scalar_dense', 'aten.nonzero', 'aten.masked_select',
                'aten._unique2', 'aten.unique_consecutive', 'aten.equal')

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if any(str(func).startswith(op) for op in self.SYNC_OPS):
            self.count += 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def count_host_reads(monkeypatch):
    mode = HostReads()
    for name in ('tolist', 'numpy'):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            mode.count += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    with mode:
        yield mode
    monkeypatch.undo()


@pytest.mark.parametrize('kwargs', [dict(), dict(mode='autosc'), dict(adaptor_type='pool')],
                         ids=['standard', 'autosc', 'pool'])
def test_host_syncs_per_forward(kwargs, monkeypatch):
    model = ShapeAdaptorResNet(**TINY_RESNET, limit_dim=8, **kwargs).train()
    image = torch.rand(1, 3, 64, 96)
    optimizer = torch.optim.SGD([a.alpha for a in model.adaptors], lr=1.0)
    counts = []
    for step in range(4):
        with count_host_reads(monkeypatch) as reads:
            loss = sum(o.mean() for o in model(image))
        counts.append(reads.count)
        loss.backward()
        if step % 2 == 1:  # the alphas change before forwards 2 (and not before 1, 3)
            optimizer.step()
        optimizer.zero_grad()
    assert counts == [1, 0, 1, 0]
    model.eval()
    with torch.no_grad(), count_host_reads(monkeypatch) as reads:
        model(image)
        model(torch.rand(1, 3, 77, 51))  # another input size: planning is host arithmetic
    assert reads.count == 1  # the first forward after the last alpha step only
    with torch.no_grad(), count_host_reads(monkeypatch) as reads:
        model(image)
    assert reads.count == 0
    frozen = ShapeAdaptorResNet(**TINY_RESNET, frozen_factors=model.learned_factors(),
                                **kwargs).eval()
    with torch.no_grad(), count_host_reads(monkeypatch) as reads:
        frozen(image)
    assert reads.count == 0


def test_resize_outputs_gives_nominal_strides_on_odd_inputs():
    for kwargs in (dict(), dict(adaptor_type='pool', alpha_init=1.5)):
        model = MODEL_REGISTRIES['mmdet'].build(
            dict(type='ShapeAdaptorResNet', resize_outputs=True, **TINY_RESNET, **kwargs))
        with torch.no_grad():
            outs = model.eval()(torch.rand(1, 3, 333, 517))
        assert [tuple(o.shape[-2:]) for o in outs] == [
            (math.ceil(333 / s), math.ceil(517 / s)) for s in (4, 8, 16, 32)]


def test_counts_and_initial_factors():
    standard = ShapeAdaptorResNet(**TINY_RESNET)  # target stride 32 from the image
    assert len(standard.adaptors) == 6
    assert math.prod(standard.learned_factors()) == pytest.approx(1 / 32)
    official = ShapeAdaptorResNet(**TINY_RESNET, count_rule='input_size', input_size=224)
    assert len(official.adaptors) == int(math.log2(224 / 2)) == 6
    fixed = ShapeAdaptorResNet(**TINY_RESNET, learnable_stem=False)
    assert len(fixed.adaptors) == 4 and math.prod(fixed.learned_factors()) == pytest.approx(1 / 8)
    r50 = ShapeAdaptorResNet(depth=50, base_channels=4, init_cfg=None)
    assert r50.adaptor_positions == (1, 4, 7, 9, 12)  # int(i * 16 / 6) - 1, i = 1..5
    assert ShapeAdaptorResNet(**TINY_RESNET, mode='autotl').learned_factors() == pytest.approx(
        [0.55] * 5, abs=1e-3)
    assert ShapeAdaptorResNet(**TINY_RESNET, mode='autosc').learned_factors() == pytest.approx(
        [0.95] * 3, abs=1e-3)


def test_soft_limit_penalty_is_kept_as_an_option():
    model = ShapeAdaptorResNet(limit_dim=4, limit_type='loss', limit_weight=2.0, **TINY_RESNET)
    assert float(model.penalty().detach()) == 0.0  # nothing seen yet
    model(torch.rand(1, 3, 256, 256))
    penalty = model.penalty()
    final = 256 * math.prod(model.learned_factors())
    assert float(penalty.detach()) == pytest.approx(2.0 * math.log(final / 4), rel=1e-5)
    penalty.backward()
    assert all(a.alpha.grad > 0 for a in model.adaptors)  # descent shrinks every factor
    assert float(ShapeAdaptorResNet(limit_dim=4, **TINY_RESNET).penalty().detach()) == 0.0


def test_segmentor_adds_the_soft_penalty_to_its_losses():
    init_default_scope('mmseg')
    cfg = Config.fromfile(str(CONFIG_DIR / 'shape_adaptor_r50_fcn_cityscapes_512x1024_80k_demo.py'))
    cfg.model.backbone.update(base_channels=8, stem_channels=8, limit_dim=2, limit_type='loss')
    cfg.model.decode_head.update(in_channels=64, channels=8)
    cfg.model.auxiliary_head.update(in_channels=32, channels=8)
    model = MODEL_REGISTRIES['mmseg'].build(cfg.model)
    batch = make_seg_batch(1, (64, 80), 5, seed=0)
    losses = model(**model.data_preprocessor(batch, True), mode='loss')
    assert float(losses['loss_shape_limit'].detach()) > 0


def test_frozen_factors_keep_the_outputs():
    for kwargs in (dict(), dict(adaptor_type='pool')):
        torch.manual_seed(0)
        learned = ShapeAdaptorResNet(alpha_init=0.3, limit_dim=9, **TINY_RESNET,
                                     **kwargs).eval()
        frozen = ShapeAdaptorResNet(frozen_factors=learned.learned_factors(), limit_dim=9,
                                    **TINY_RESNET, **kwargs).eval()
        frozen.load_state_dict(learned.state_dict(), strict=False)
        assert not any('alpha' in n for n, _ in frozen.named_parameters())
        image = torch.rand(1, 3, 97, 131)
        with torch.no_grad():
            for a, b in zip(learned(image), frozen(image)):
                torch.testing.assert_close(a, b)


@pytest.mark.parametrize('cls, kwargs, match', [
    (ShapeAdaptorResNet, dict(adaptor_type='inblock'),
     r"adaptor_type must be one of \('residual', 'pool'\)"),
    (ShapeAdaptorResNet, dict(mode='auto'),
     r"mode must be one of \('standard', 'autotl', 'autosc'"),
    (ShapeAdaptorResNet, dict(count_rule='log'),
     r"count_rule must be one of \('target_stride', 'input_size'\)"),
    (ShapeAdaptorResNet, dict(limit_type='soft'), r"limit_type must be one of \('hard', 'loss'\)"),
    (ShapeAdaptorResNet, dict(limit_dim=0), r'limit_dim must be a positive int .*>= 1'),
    (ShapeAdaptorResNet, dict(limit_dim=0.5), r'limit_dim must be a positive int'),
    (ShapeAdaptorResNet, dict(mode='autotl', learnable_stem=False, strides=(1, 1, 1, 1)),
     "mode='autotl' puts adaptors at the network's strided points"),
    (ShapeAdaptorResNet, dict(mode='autotl', num_adaptors=3), "num_adaptors must be 5 with "
     "mode='autotl'"),
    (ShapeAdaptorResNet, dict(adaptor_type='pool', mode='autosc'),
     "mode='autosc' needs adaptor_type='residual'"),
    (ShapeAdaptorResNet, dict(adaptor_type='pool', learnable_stem=True),
     "learnable_stem=True needs adaptor_type='residual'"),
    (ShapeAdaptorResNet, dict(num_adaptors=9), r'num_adaptors must be in 1..8'),
    (ShapeAdaptorResNet, dict(num_adaptors=2), r'num_adaptors=2 cannot reach target_stride=32'
     r'.*valid: num_adaptors >= 6'),
    (ShapeAdaptorResNet, dict(mode='autosc', num_adaptors=4), r'num_adaptors must be in 1..3'),
    (ShapeAdaptorResNet, dict(count_rule='input_size'), "count_rule='input_size' needs "
     'input_size'),
    (ShapeAdaptorDLA, dict(num_adaptors=6), r'num_adaptors must be in 1..5'),
    (ShapeAdaptorDLA, dict(adaptor_type='residual'), r"adaptor_type must be one of \('pool',\)"),
    (ShapeAdaptorDLA, dict(mode='autosc'), r"mode must be one of \('standard', 'autotl'\)"),
    (ShapeAdaptorDLA, dict(num_adaptors=2, target_stride=16), 'cannot reach target_stride'),
    (ShapeAdaptorResNet, dict(adaptor_positions=(3, 2, 1, 0, 4)), 'adaptor_positions must be'),
    (ShapeAdaptorResNet, dict(adaptor_positions=(0, 1, 2, 3, 7)), 'adaptor_positions must be'),
    (ShapeAdaptorResNet, dict(strides=(1, 2, 2, 2)), "strides must stay 1 .*mode='standard'"),
    (ShapeAdaptorDLA, dict(output_stride=8), 'takes no output_stride'),
    (ShapeAdaptorResNet, dict(r1=1.0), 'r1 must be smaller than r2'),
    (ShapeAdaptorResNet, dict(size_rule='ceil'), 'size_rule must be one of'),
    (ShapeAdaptorResNet, dict(target_stride=1), 'target_stride must be larger'),
    (ShapeAdaptorResNet, dict(frozen_factors=[0.7]), 'frozen_factors must give one factor'),
])
def test_bad_configs(cls, kwargs, match):
    base = TINY_RESNET if cls is ShapeAdaptorResNet else TINY_DLA
    with pytest.raises(ValueError, match=match):
        cls(**base, **kwargs)


def test_tiny_inputs_run():
    model = ShapeAdaptorResNet(num_adaptors=8, **TINY_RESNET).eval()
    assert model(torch.rand(1, 3, 16, 16))[-1].shape[-2:] == (1, 1)
