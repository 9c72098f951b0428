"""Draw docs/diagrams/deeplab.png: DeepLabV2Head and the dense-CRF switch at prediction time.

    python docs/diagrams/make_deeplab_diagram.py [--num-classes 19] [--in-channels 2048]
        [--out docs/diagrams/deeplab.png]

(a) is ``DeepLabV2Head`` as built here (rates, widths and parameter count come from the
module): parallel 3x3 atrous classifiers on the last backbone map whose class scores
are summed; next to each branch its nine taps are drawn to scale with the rate. (b) is
what ``crf=dict(...)`` on ``CRFEncoderDecoder`` adds to prediction: the logits,
upsampled to the (padded) input, go through ``DenseCRF`` mean-field inference with its
appearance and smoothness kernels, whose defaults are read from ``DenseCRF()``.
"""
import argparse
import inspect
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

from mmplug_agg.models.decode_heads.deeplabv2_head import DeepLabV2Head  # noqa: E402
from mmplug_agg.models.layers.dense_crf import DenseCRF  # noqa: E402
from mmplug_agg.models.segmentors.dense_crf_segmentors import CRFEncoderDecoder  # noqa: E402

COLOURS = dict(feature='#c9d6ea', branch='#f2b8b8', score='#cde5c4', net='#e3e3e3',
               crf='#d9c7ec', kernel='#f7d9a8', image='#f7f0a8', group='#faf6ee')
EDGE = dict(main='#555555', bypass='#999999', loop='#7a5aa6', image='#a89a1c')
# Half width, in data units, of the widest tap pattern (the largest rate).
GLYPH_HALF = 0.22


def box(ax, x, y, w, h, text, colour, fontsize=8, lw=0.9, bold=False):
    """A rounded box centred on (x, y); returns its patch for arrow clipping."""
    patch = FancyBboxPatch((x - w / 2, y - h / 2), w, h,
                           boxstyle='round,pad=0.0,rounding_size=0.06', fc=colour, ec='#333333',
                           lw=lw, zorder=3)
    ax.add_patch(patch)
    ax.text(x, y, text, ha='center', va='center', fontsize=fontsize, zorder=4, linespacing=1.2,
            weight='bold' if bold else 'normal')
    return patch


def arrow(ax, start, end, colour=EDGE['main'], patch_a=None, patch_b=None, dashed=False,
          lw=1.2, rad=0.0):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle='-|>', mutation_scale=9, color=colour,
                                 lw=lw, linestyle=(0, (4, 2)) if dashed else '-',
                                 patchA=patch_a, patchB=patch_b, shrinkA=1, shrinkB=1,
                                 connectionstyle=f'arc3,rad={rad}', zorder=2))


def path(ax, points, colour=EDGE['main'], dashed=False, lw=1.2):
    """A polyline whose last segment carries the arrow head."""
    xs, ys = zip(*points[:-1])
    ax.plot(xs, ys, color=colour, lw=lw, linestyle=(0, (4, 2)) if dashed else '-', zorder=2)
    arrow(ax, points[-2], points[-1], colour, dashed=dashed, lw=lw)


def draw_head(ax, head: DeepLabV2Head, top: float) -> None:
    """Panel (a): the parallel atrous classifiers and their sum."""
    dilations = head.dilations
    convs = list(head.classifiers)
    params = sum(p.numel() for p in head.parameters())
    ax.text(0.2, top, f'(a) DeepLabV2Head: ASPP-L, rates {dilations}, class scores summed',
            fontsize=9.5, weight='bold', va='center')
    rows = [top - 0.75 - 0.72 * k for k in range(len(convs))]
    middle = (rows[0] + rows[-1]) / 2
    box(ax, 1.45, middle, 2.3, 1.0,
                 f'last backbone map\n(in_index={head.in_index})\n'
                 f'{head.in_channels} ch, stride 8', COLOURS['feature'])
    total = box(ax, 8.65, middle, 0.5, 0.5, '+', '#ffffff', fontsize=12)
    scores = box(ax, 10.25, middle, 1.9, 0.9,
                 f'class scores\n{head.out_channels} ch, stride 8', COLOURS['score'])
    arrow(ax, (8.65, middle), (10.25, middle), patch_a=total, patch_b=scores)
    scale = GLYPH_HALF / max(dilations)
    for conv, y in zip(convs, rows):
        rate = conv.dilation[0]
        k = conv.kernel_size[0]
        box(ax, 5.2, y, 3.4, 0.6, '', COLOURS['branch'])
        ax.text(4.75, y, f'{k}x{k} conv, rate {rate} ({(k - 1) * rate + 1} px)\n'
                f'{conv.in_channels} -> {conv.out_channels}'
                + (', bias' if conv.bias is not None else ''), fontsize=7.5, ha='center',
                va='center', zorder=4)
        # Start on the source's right side, so the fan-out stays readable.
        arrow(ax, (2.6, middle), (3.5, y), lw=1.0)
        # The taps sit inside the box, clear of the edges to the sum.
        offsets = [(i - k // 2) * rate * scale for i in range(k)]
        ax.scatter([6.5 + dx for dx in offsets for _ in offsets],
                   [y + dy for _ in offsets for dy in offsets], s=4, color='#c0392b', zorder=4)
        arrow(ax, (6.9, y), (8.4, middle + 0.18 * (y - middle) / (rows[0] - middle)), lw=1.0)
    init = head.init_cfg if isinstance(head.init_cfg, dict) else {}
    notes = ['no hidden layer, no image pooling,', 'no concat (those are v3\'s ASPPHead)',
             "mmseg's 1x1 conv_seg: " + ('removed' if not hasattr(head, 'conv_seg') else 'kept'),
             f"init N(0, {init.get('std', '?')}), bias {init.get('bias', '?')}",
             f'{params:,} parameters']
    ax.text(11.45, rows[0] + 0.1, '\n'.join(notes), fontsize=7.5, va='top', linespacing=1.45)
    ax.text(6.5, rows[-1] - 0.42, 'dots: the nine taps, to scale', fontsize=6.5, ha='center',
            color='#555555')


def draw_crf(ax, crf: DenseCRF, top: float) -> None:
    """Panel (b): the prediction path of CRFEncoderDecoder."""
    default = inspect.signature(CRFEncoderDecoder.__init__).parameters['crf'].default
    ax.text(0.2, top, f"(b) CRFEncoderDecoder(crf=dict(num_iterations={crf.num_iterations})): "
            'dense CRF on every prediction (training unchanged)', fontsize=9.5, weight='bold',
            va='center')
    row = top - 0.85
    image = box(ax, 0.95, row, 1.3, 0.7, 'image\n3 x H x W', COLOURS['image'])
    prep = box(ax, 3.05, row, 2.0, 0.7, 'data preprocessor\nnormalise, pad', COLOURS['net'])
    net = box(ax, 5.45, row, 2.0, 0.7, 'backbone +\ndecode head', COLOURS['net'])
    logits = box(ax, 7.8, row, 1.9, 0.7, 'logits\nC x H/8 x W/8', COLOURS['score'])
    up = box(ax, 10.2, row, 2.1, 0.7, 'bilinear upsample\nto the padded H x W',
             COLOURS['score'])
    for (a, pa), (b, pb) in zip([(0.95, image), (3.05, prep), (5.45, net), (7.8, logits)],
                                [(3.05, prep), (5.45, net), (7.8, logits), (10.2, up)]):
        arrow(ax, (a, row), (b, row), patch_a=pa, patch_b=pb)

    # The CRF frame.
    f_left, f_right, f_bottom, f_top = 0.25, 10.95, top - 5.05, top - 1.55
    ax.add_patch(Rectangle((f_left, f_bottom), f_right - f_left, f_top - f_bottom,
                           fc='#fcfbff', ec=EDGE['loop'], lw=1.2, zorder=0))
    ax.text(f_left + 0.1, f_top - 0.2, 'DenseCRF', fontsize=8.5, weight='bold',
            color=EDGE['loop'], va='center')
    ax.text(f_left + 0.1, f_bottom + 0.2,
            f"method='{crf.method}', normalization='{crf.normalization}'", fontsize=7,
            color=EDGE['loop'], va='center')
    y_unary, y_image = f_top - 1.05, f_bottom + 1.1
    box(ax, 1.75, y_unary, 2.5, 0.9,
                'unary\nU = -log softmax(logits)\nstart: Q = softmax(-U)', COLOURS['crf'],
                fontsize=7.5)
    box(ax, 1.75, y_image, 2.5, 0.75,
                  'image in 0-255\n(preprocessor mean/std undone)', COLOURS['image'],
                  fontsize=7.5)
    lane = f_top + 0.3
    path(ax, [(10.2, row - 0.35), (10.2, lane), (1.75, lane), (1.75, y_unary + 0.45)])

    # Message passing: both Gaussian kernels over all pixel pairs.
    g_left, g_right = 3.55, 7.65
    g_bottom, g_top = f_bottom + 0.5, f_top - 0.3
    ax.add_patch(Rectangle((g_left, g_bottom), g_right - g_left, g_top - g_bottom,
                           fc=COLOURS['group'], ec='#b08d57', lw=0.9, zorder=1))
    ax.text((g_left + g_right) / 2, g_top - 0.25, 'messages  m_k(Q)_i = sum_j!=i k_k(f_i, f_j) Q_j',
            fontsize=7.5, ha='center', va='center')
    kx = (g_left + g_right) / 2
    box(ax, kx, g_top - 0.95, 3.7, 0.8,
        f'appearance (position + colour)\nw = {crf.appearance_weight:g}, '
        f'θα = {crf.appearance_xy_std:g} px, θβ = {crf.appearance_rgb_std:g}',
        COLOURS['kernel'], fontsize=7.5)
    box(ax, kx, g_bottom + 0.6, 3.7, 0.8,
        f'smoothness (position)\nw = {crf.smoothness_weight:g}, '
        f'θγ = {crf.smoothness_xy_std:g} px', COLOURS['kernel'], fontsize=7.5)
    arrow(ax, (3.0, y_unary), (g_left, y_unary), colour=EDGE['loop'])
    ax.text(3.27, y_unary + 0.12, 'Q', fontsize=7.5, ha='center', color=EDGE['loop'])
    arrow(ax, (3.0, y_image), (g_left, y_image), colour=EDGE['image'])
    ax.text(3.27, y_image + 0.12, 'f', fontsize=7.5, ha='center', color=EDGE['image'])

    ux, uy = 9.35, (g_bottom + g_top) / 2
    box(ax, ux, uy, 2.6, 1.05,
                 'mean-field update\nQ = softmax(-U\n+ sum_k w_k m_k(Q))', COLOURS['crf'],
                 fontsize=7.5)
    arrow(ax, (g_right, uy), (ux - 1.3, uy), colour=EDGE['loop'])
    # U reaches the update over the top of the message box.
    path(ax, [(1.75 + 0.6, y_unary + 0.45), (1.75 + 0.6, f_top - 0.14),
              (ux - 0.6, f_top - 0.14), (ux - 0.6, uy + 0.525)], lw=1.0)
    ax.text(8.2, f_top - 0.1, 'U', fontsize=7.5, ha='center', va='bottom')
    path(ax, [(ux, uy - 0.525), (ux, f_bottom + 0.22), (kx, f_bottom + 0.22),
              (kx, g_bottom)], colour=EDGE['loop'], lw=1.4)
    ax.text((ux + kx) / 2, f_bottom + 0.32, f'Q again: {crf.num_iterations} iterations',
            fontsize=7.5, ha='center', va='bottom', color=EDGE['loop'])

    ox = 12.6
    log_q = box(ax, ox, uy + 0.9, 1.7, 0.6, 'log Q (N, C, H, W)', COLOURS['score'],
                fontsize=7.5)
    finish = box(ax, ox, uy - 0.35, 2.1, 0.9, 'mmseg: crop padding,\nresize to original,\n'
                 'argmax', COLOURS['net'], fontsize=7.5)
    labels = box(ax, ox, f_bottom + 0.2, 1.6, 0.6, 'label map', COLOURS['score'], lw=2.2)
    path(ax, [(ux + 1.3, uy), (11.25, uy), (11.25, uy + 0.9), (ox - 0.85, uy + 0.9)],
         colour=EDGE['loop'])
    arrow(ax, (ox, uy + 0.9), (ox, uy - 0.35), patch_a=log_q, patch_b=finish)
    arrow(ax, (ox, uy - 0.35), (ox, f_bottom + 0.2), patch_a=finish, patch_b=labels)
    # The switch: crf=None skips the frame.
    path(ax, [(11.25, row), (13.85, row), (13.85, uy - 0.35), (ox + 1.05, uy - 0.35)],
         colour=EDGE['bypass'], dashed=True)
    ax.text(13.8, row + 0.12, 'crf=None', fontsize=7.5, ha='right', va='bottom',
            color='#777777')
    ax.text(13.75, row - 0.12, f'(default crf={default!r}:\nDenseCRF defaults)', fontsize=6.5,
            ha='right', va='top', color='#777777')


def draw(num_classes: int, in_channels: int, out: str) -> None:
    head = DeepLabV2Head(in_channels=in_channels, num_classes=num_classes)
    crf = DenseCRF()
    xlim, ylim = (0.0, 14.2), (0.0, 9.9)
    inches = 0.9
    fig = plt.figure(figsize=((xlim[1] - xlim[0]) * inches, (ylim[1] - ylim[0]) * inches),
                     dpi=100)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect('equal')
    ax.axis('off')
    draw_head(ax, head, top=9.6)
    ax.plot([0.1, 14.1], [5.75, 5.75], color='#bbbbbb', lw=0.8)
    draw_crf(ax, crf, top=5.45)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, pil_kwargs=dict(optimize=True))
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--num-classes', type=int, default=19, help='19: Cityscapes')
    parser.add_argument('--in-channels', type=int, default=2048, help='2048: ResNet-101')
    parser.add_argument('--out', default=os.path.join(os.path.dirname(__file__), 'deeplab.png'))
    args = parser.parse_args()
    draw(args.num_classes, args.in_channels, args.out)
    print(f'wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KB)')


if __name__ == '__main__':
    main()
