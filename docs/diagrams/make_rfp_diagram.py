"""Draw docs/diagrams/rfp.png from a built RecursiveFeaturePyramid.

    python docs/diagrams/make_rfp_diagram.py [--depth 50] [--out docs/diagrams/rfp.png]

(a) unrolls the two passes of ``RecursiveFeaturePyramid`` around mmdet's ResNet and
FPN (the docs' config): rows are the pyramid levels (finest at the bottom), columns
the first backbone pass and its FPN, the feedback path, the second backbone pass and
the same FPN, and the fusion gate. Which levels are fed back into which stage, the
widths, the ASPP branches and the zero init are read from the built module, so the
picture follows the code. (b) is the DetectoRS ASPP on the feedback path, (c) where
the feedback enters a stage and how the gate fuses the passes.
"""
import argparse
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

from mmplug_agg.models.backbones import RecursiveFeaturePyramid  # noqa: E402

COLOURS = dict(backbone='#c9d6ea', pyramid='#cde5c4', aspp='#f2b8b8', feedback='#f7d9a8',
               gate='#d9c7ec', stem='#e3e3e3', output='#cde5c4', note='#fbfbf3')
EDGE = dict(chain='#555555', feedback='#c0392b', skip='#8e7cc3', image='#888888')
BOX_W, BOX_H = 1.05, 0.5
# Column x of each part of panel (a).
X = dict(image=-0.55, b1=1.0, f1=2.55, aspp=4.15, conv=5.5, b2=7.05, f2=8.6, gate=10.15,
         out=11.6)


def box(ax, x, y, text, colour, w=BOX_W, h=BOX_H, fontsize=8, lw=0.9):
    """A rounded box centred on (x, y); returns its patch for arrow clipping."""
    patch = FancyBboxPatch((x - w / 2, y - h / 2), w, h,
                           boxstyle='round,pad=0.0,rounding_size=0.06', fc=colour, ec='#333333',
                           lw=lw, zorder=3)
    ax.add_patch(patch)
    ax.text(x, y, text, ha='center', va='center', fontsize=fontsize, zorder=4, linespacing=1.1)
    return patch


def arrow(ax, start, end, colour, patch_a=None, patch_b=None, dashed=False, lw=1.2, rad=0.0):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle='-|>', mutation_scale=9, color=colour,
                                 lw=lw, linestyle=(0, (4, 2)) if dashed else '-',
                                 patchA=patch_a, patchB=patch_b, shrinkA=1, shrinkB=1,
                                 connectionstyle=f'arc3,rad={rad}', zorder=2))


def path(ax, points, colour, dashed=False, lw=1.2):
    """A polyline whose last segment carries the arrow head."""
    xs, ys = zip(*points[:-1])
    ax.plot(xs, ys, color=colour, lw=lw, linestyle=(0, (4, 2)) if dashed else '-', zorder=2,
            solid_capstyle='butt')
    arrow(ax, points[-2], points[-1], colour, dashed=dashed, lw=lw)


def describe(rfp: RecursiveFeaturePyramid) -> dict:
    """What the picture needs, read from the module."""
    runner = rfp._runners[0]
    neck = rfp.neck
    start = getattr(neck, 'start_level', 0)
    num_backbone_levels = getattr(neck, 'backbone_end_level', len(neck.in_channels)) - start
    convs = [conv for group in rfp.feedback_convs for conv in group]
    zero = all(not p.detach().any() for m in [*convs, rfp.gate] for p in m.parameters())
    return dict(
        steps=rfp.rfp_steps,
        shared=rfp.share_backbone_weights,
        level_stage={level: runner.out_indices[start + level]
                     for level in range(num_backbone_levels)},
        fed=dict(rfp.feedback_paths),
        stage_channels=runner.stage_channels,
        num_levels=neck.num_outs,
        width=neck.out_channels,
        extra_convs=bool(getattr(neck, 'add_extra_convs', False)),
        dilations=rfp.aspp.dilations,
        branch_width=rfp.aspp.out_channels,
        feedback_out=[conv.out_channels for conv in rfp.feedback_convs[0]],
        gate=(rfp.gate.in_channels, rfp.gate.out_channels),
        block=type(rfp.backbone.layer1[0]).__name__,
        zero=zero,
    )


def draw_passes(ax, info: dict) -> None:
    """Panel (a): two unrolled passes, feedback and fusion."""
    num_levels, fed, level_stage = info['num_levels'], info['fed'], info['level_stage']
    stages = sorted(set(level_stage.values()))
    top = num_levels - 1
    header_y = top + 0.75
    for key, text in (('b1', 'pass 1\nbackbone'), ('f1', 'pass 1\nFPN'),
                      ('aspp', 'feedback (pass >= 2)\nshared ASPP, 1x1 per stage'),
                      ('b2', 'pass 2\nbackbone' + (' (shared)' if info['shared'] else ' copy')),
                      ('f2', 'pass 2\nsame FPN'), ('gate', 'fusion\ngate'), ('out', 'output')):
        x = (X['aspp'] + X['conv']) / 2 if key == 'aspp' else X[key]
        ax.text(x, header_y, text, ha='center', va='bottom', fontsize=8.5, weight='bold')

    stem_y = -1.1
    image = box(ax, X['image'], stem_y, 'image', COLOURS['stem'], w=0.8)
    patches = {}
    for tag, prime in (('1', ''), ('2', "'")):
        bx, fx = X['b' + tag], X['f' + tag]
        stem = box(ax, bx, stem_y, 'stem', COLOURS['stem'])
        previous = stem
        for stage in stages:
            patches[f'C{tag}{stage}'] = box(
                ax, bx, stage, f'C{stage + 2}{prime}\n{info["stage_channels"][stage]} ch',
                COLOURS['backbone'])
            arrow(ax, (bx, stage - 1), (bx, stage), EDGE['chain'], previous,
                  patches[f'C{tag}{stage}'])
            previous = patches[f'C{tag}{stage}']
        for level in range(num_levels):
            patches[f'P{tag}{level}'] = box(ax, fx, level, f'P{level + 2}{prime}',
                                            COLOURS['pyramid'])
        for level, stage in level_stage.items():
            arrow(ax, (bx, stage), (fx, level), EDGE['chain'], patches[f'C{tag}{stage}'],
                  patches[f'P{tag}{level}'])
        # Top-down: each backbone level receives the upsampled level above it.
        backbone_levels = sorted(level_stage)
        for level in backbone_levels[1:]:
            arrow(ax, (fx, level), (fx, level - 1), EDGE['chain'], patches[f'P{tag}{level}'],
                  patches[f'P{tag}{level - 1}'])
        for level in range(len(backbone_levels), num_levels):
            arrow(ax, (fx, level - 1), (fx, level), '#999999', patches[f'P{tag}{level - 1}'],
                  patches[f'P{tag}{level}'])
        patches['stem' + tag] = stem
    ax.text(X['f1'] - 0.08, len(level_stage) - 0.5,
            'extra level:\n' + ('conv s2' if info['extra_convs'] else 'max-pool s2'),
            fontsize=6.5, color='#666666', va='center', ha='right')
    arrow(ax, (X['image'], stem_y), (X['b1'], stem_y), EDGE['image'], image, patches['stem1'])
    # The second pass reads the image again: route under the first pass.
    low = stem_y - 0.6
    path(ax, [(X['image'], stem_y - BOX_H / 2), (X['image'], low), (X['b2'], low),
              (X['b2'], stem_y - BOX_H / 2)], EDGE['image'])

    for level in range(num_levels):
        if level in fed:
            stage = fed[level]
            aspp = box(ax, X['aspp'], level, f'ASPP\n{info["width"]} ch', COLOURS['aspp'])
            conv = box(ax, X['conv'], level,
                       f'1x1 conv\n-> {info["stage_channels"][stage]}'
                       + (', zero' if info['zero'] else ''),
                       COLOURS['feedback'], w=1.15)
            arrow(ax, (X['f1'], level), (X['aspp'], level), EDGE['feedback'],
                  patches[f'P1{level}'], aspp, lw=1.5)
            arrow(ax, (X['aspp'], level), (X['conv'], level), EDGE['feedback'], aspp, conv,
                  lw=1.5)
            arrow(ax, (X['conv'], level), (X['b2'], stage), EDGE['feedback'], conv,
                  patches[f'C2{stage}'], lw=1.5)
        else:
            why = ('finest level:\nnot fed back' if level == 0 else
                   'no backbone stage:\nnot fed back')
            ax.text((X['aspp'] + X['conv']) / 2, level, why, ha='center', va='center',
                    fontsize=7, color='#777777', style='italic')

    # Gate per level: pass-1 P (dashed, above the row) and pass-2 P' in, fused P out.
    lane = BOX_H / 2 + 0.16
    for level in range(num_levels):
        gate = box(ax, X['gate'], level, "σP' + (1-σ)P", COLOURS['gate'], fontsize=7.5)
        out = box(ax, X['out'], level, f'P{level + 2}', COLOURS['output'], lw=2.4)
        arrow(ax, (X['f2'], level), (X['gate'], level), EDGE['chain'], patches[f'P2{level}'],
              gate)
        arrow(ax, (X['gate'], level), (X['out'], level), EDGE['chain'], gate, out)
        x0 = X['f1'] + 0.3
        path(ax, [(x0, level + BOX_H / 2), (x0, level + lane), (X['gate'] - 0.3, level + lane),
                  (X['gate'] - 0.3, level + BOX_H / 2)], EDGE['skip'], dashed=True, lw=1.0)
    steps = info['steps']
    if steps > 2:
        note = f'rfp_steps = {steps}: passes 3..{steps} repeat pass 2 on the fused P'
        ax.text(X['gate'], low, note, ha='center', va='center', fontsize=7.5)


def draw_aspp(ax, info: dict, x0: float, y0: float) -> None:
    """Panel (b): DetectoRS ASPP branches, ReLU each, concatenated."""
    dilations = info['dilations']
    branches = []
    for dilation in dilations[:-1]:
        branches.append('1x1 conv' if dilation == 1 else f'3x3 conv, rate {dilation}')
    branches.append('global avg pool\n-> 1x1 conv -> broadcast')
    rows = [y0 - 0.62 * k for k in range(len(branches))]
    middle = (rows[0] + rows[-1]) / 2
    ax.text(x0 - 0.55, y0 + 0.6, f'(b) DetectoRS ASPP (DetectoRSASPP, dilations={dilations})',
            fontsize=8.5, weight='bold', va='center')
    box(ax, x0 + 0.1, middle, f"P_i\n{info['width']} ch", COLOURS['pyramid'], w=0.9)
    box(ax, x0 + 5.0, middle, f"concat\n{len(branches)} x {info['branch_width']}\n"
              f"= {info['branch_width'] * len(branches)} ch", COLOURS['aspp'], w=1.0, h=0.95)
    for text, y in zip(branches, rows):
        branch = box(ax, x0 + 2.0, y, text, COLOURS['aspp'], w=2.0, h=0.5, fontsize=7.5)
        relu = box(ax, x0 + 3.55, y, 'ReLU', '#ffffff', w=0.6, h=0.34, fontsize=7.5)
        # Edge to edge, so that the fan-in and fan-out meet the boxes' sides.
        arrow(ax, (x0 + 0.55, middle), (x0 + 1.0, y), EDGE['chain'], lw=1.0)
        arrow(ax, (x0 + 2.0, y), (x0 + 3.55, y), EDGE['chain'], branch, relu, lw=1.0)
        arrow(ax, (x0 + 3.85, y), (x0 + 4.5, middle + 0.3 * (y - middle) / (rows[0] - middle)),
              EDGE['chain'], lw=1.0)
    ax.text(x0 + 2.4, rows[-1] - 0.55, 'biased convs, no norm, no projection after the concat',
            fontsize=7, ha='center', color='#555555')


def draw_entry(ax, info: dict, x0: float, y0: float) -> None:
    """Panel (c): the feedback joins a stage's first block; the gate fuses the passes."""
    ax.text(x0 - 0.3, y0 + 0.6, '(c) feedback entry and fusion', fontsize=8.5, weight='bold',
            va='center')
    y = y0 - 0.15
    x_in = box(ax, x0 + 0.3, y, 'stage\ninput', COLOURS['backbone'], w=0.8)
    convs = '1x1, 3x3, 1x1' if info['block'] == 'Bottleneck' else '3x3, 3x3'
    body = box(ax, x0 + 1.85, y, f"first block\n({info['block']}):\n{convs} + BN",
               COLOURS['backbone'], w=1.3, h=0.7, fontsize=7.5)
    plus = box(ax, x0 + 3.35, y, '+', '#ffffff', w=0.4, h=0.4, fontsize=10)
    relu = box(ax, x0 + 4.3, y, 'ReLU', '#ffffff', w=0.65, h=0.36, fontsize=7.5)
    rest = box(ax, x0 + 5.4, y, 'rest of\nstage', COLOURS['backbone'], w=0.85)
    arrow(ax, (x0 + 0.3, y), (x0 + 1.85, y), EDGE['chain'], x_in, body)
    arrow(ax, (x0 + 1.85, y), (x0 + 3.35, y), EDGE['chain'], body, plus)
    arrow(ax, (x0 + 3.35, y), (x0 + 4.3, y), EDGE['chain'], plus, relu)
    arrow(ax, (x0 + 4.3, y), (x0 + 5.4, y), EDGE['chain'], relu, rest)
    ax.text(x0 + 2.6, y + 0.72, 'shortcut', fontsize=7, ha='center', color='#555555')
    path(ax, [(x0 + 0.3, y + BOX_H / 2), (x0 + 0.3, y + 0.6), (x0 + 3.35, y + 0.6),
              (x0 + 3.35, y + 0.2)], EDGE['chain'], lw=1.0)
    feedback = box(ax, x0 + 1.85, y - 0.95, '1x1 conv(ASPP(P_i))', COLOURS['feedback'], w=1.9,
                   h=0.38, fontsize=7.5)
    arrow(ax, (x0 + 1.85, y - 0.95), (x0 + 3.35, y), EDGE['feedback'], feedback, plus, lw=1.5)
    ax.text(x0 + 3.5, y - 0.62, 'pass >= 2 only,\nbefore the final ReLU', fontsize=7,
            color=EDGE['feedback'], va='center')
    gate_in, gate_out = info['gate']
    zero = ('zero-initialised: σ = 0.5 at the start, a plain second look'
            if info['zero'] else 'not zero-initialised')
    ax.text(x0 - 0.3, y - 1.55,
            f"gate: σ = sigmoid(1x1 conv {gate_in} -> {gate_out} ch (P')), "
            "P <- σ P' + (1 - σ) P\n"
            f'one gate for every level and pass; {zero}',
            fontsize=7.5, va='top', linespacing=1.4)


def draw(depth: int, out: str) -> None:
    widths = [64, 128, 256, 512] if depth < 50 else [256, 512, 1024, 2048]
    neck_width = 256
    rfp = RecursiveFeaturePyramid(
        backbone=dict(type='ResNet', depth=depth),
        neck=dict(type='FPN', in_channels=widths, out_channels=neck_width, num_outs=5),
        rfp_steps=2, aspp_out_channels=neck_width // 4)
    info = describe(rfp)

    xlim, ylim = (-1.15, 12.35), (-6.0, info['num_levels'] + 0.35)
    inches = 0.9
    fig = plt.figure(figsize=((xlim[1] - xlim[0]) * inches, (ylim[1] - ylim[0]) * inches + 0.4),
                     dpi=100)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1 - 0.4 / fig.get_figheight()))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect('equal')
    ax.axis('off')
    ax.add_patch(Rectangle((xlim[0] + 0.05, -2.35), xlim[1] - xlim[0] - 0.1,
                           ylim[1] - 0.05 + 2.35, fc='none', ec='#bbbbbb', lw=0.8))
    ax.text(xlim[0] + 0.15, ylim[1] - 0.2, '(a)', fontsize=9, weight='bold', va='top')
    draw_passes(ax, info)
    for x, w in ((xlim[0] + 0.05, 6.25), (5.35, xlim[1] - 5.4)):
        ax.add_patch(Rectangle((x, ylim[0] + 0.05), w, -2.5 - ylim[0] - 0.05, fc='none',
                               ec='#bbbbbb', lw=0.8))
    draw_aspp(ax, info, x0=-0.35, y0=-3.25)
    draw_entry(ax, info, x0=5.85, y0=-3.25)
    ax.legend(handles=[
        plt.Line2D([], [], color=EDGE['chain'], lw=1.4, label='forward'),
        plt.Line2D([], [], color=EDGE['feedback'], lw=1.6, label='feedback (RFP)'),
        plt.Line2D([], [], color=EDGE['skip'], lw=1.2, ls=(0, (4, 2)), label='pass-1 P to gate'),
    ], loc='lower right', bbox_to_anchor=(1.0, (-2.25 - ylim[0]) / (ylim[1] - ylim[0])),
              ncol=3, fontsize=7.5, frameon=False)
    fig.suptitle(f"RecursiveFeaturePyramid: ResNet-{depth} + FPN ({info['width']} ch), "
                 f"rfp_steps={info['steps']}, feedback paths (level, stage) = "
                 f"{tuple(sorted(info['fed'].items()))}", fontsize=10, y=0.995)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, pil_kwargs=dict(optimize=True))
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--depth', type=int, default=50, help='ResNet depth of the backbone')
    parser.add_argument('--out', default=os.path.join(os.path.dirname(__file__), 'rfp.png'))
    args = parser.parse_args()
    draw(args.depth, args.out)
    print(f'wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KB)')


if __name__ == '__main__':
    main()
