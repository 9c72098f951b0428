"""Draw docs/diagrams/augfpn.png: AugFPN's three parts on an FPN.

    python docs/diagrams/make_augfpn_diagram.py
"""
import os.path as osp

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

COLOURS = dict(backbone='#c9d6ea', lateral='#f3d9b1', pyramid='#cde5c4', rfa='#f2b8b8',
               srs='#d9c7ec', cs='#f7f0a8')


def box(ax, x, y, w, h, text, colour, fontsize=9):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle='round,pad=0.02', fc=colour, ec='#333'))
    ax.text(x + w / 2, y + h / 2, text, ha='center', va='center', fontsize=fontsize)


def arrow(ax, start, end, style='-|>', colour='#333', dashed=False):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=10, color=colour,
                                 linestyle='--' if dashed else '-', lw=1.2))


def main() -> None:
    fig, ax = plt.subplots(figsize=(11, 5.6))
    ax.set_xlim(0, 11)
    ax.set_ylim(0, 5.6)
    ax.axis('off')
    levels = range(4)
    for i in levels:
        y = 0.5 + i * 1.1
        box(ax, 0.3, y, 1.2, 0.7, f'C{i + 2}', COLOURS['backbone'])
        box(ax, 2.3, y, 1.2, 0.7, f'M{i + 2}', COLOURS['lateral'])
        box(ax, 4.3, y, 1.2, 0.7, f'P{i + 2}', COLOURS['pyramid'])
        arrow(ax, (1.5, y + 0.35), (2.3, y + 0.35))
        arrow(ax, (3.5, y + 0.35), (4.3, y + 0.35))
        ax.text(1.9, y + 0.45, '1x1', fontsize=7, ha='center')
        ax.text(3.9, y + 0.45, '3x3', fontsize=7, ha='center')
        if i:
            arrow(ax, (2.9, y), (2.9, y - 0.4), colour='#777')
    ax.text(1.55, 0.05, 'M: laterals; top-down adds each upper level, resized to the exact size',
            fontsize=7, color='#555')

    box(ax, 0.3, 4.95, 4.6, 0.5, 'RFA: pool C5 at ratios 0.1/0.2/0.3 -> 1x1 -> resize\n'
        'adaptive spatial fusion -> weighted sum, added to M5', COLOURS['rfa'], fontsize=7.5)
    arrow(ax, (0.9, 4.2), (0.9, 4.95))
    arrow(ax, (2.9, 4.95), (2.9, 4.2), colour='#b33')

    box(ax, 6.2, 2.4, 2.1, 1.2, 'Soft RoI selection\nRoIAlign from P2-P5\nconcat -> 1x1 -> ReLU\n'
        '-> 3x3 -> sigmoid maps\nweighted sum', COLOURS['srs'], fontsize=7.5)
    for i in levels:
        arrow(ax, (5.5, 0.85 + i * 1.1), (6.2, 3.0), colour='#7a5aa6')
    box(ax, 8.8, 2.65, 1.9, 0.7, 'box head\nL_cls,P + L_loc,P', COLOURS['pyramid'], fontsize=8)
    arrow(ax, (8.3, 3.0), (8.8, 3.0))

    box(ax, 6.2, 0.3, 4.6, 1.3, 'Consistent supervision (training only)\n'
        'RoIAlign every RoI from each of M2-M5\n-> one auxiliary head shared by the levels\n'
        'lambda * sum over levels of (L_cls,M + L_loc,M [+ L_mask,M])\nlambda = 0.25',
        COLOURS['cs'], fontsize=7.5)
    for i in levels:
        arrow(ax, (3.5, 0.65 + i * 1.1), (6.2, 0.95), colour='#a89a1c', dashed=True)
    ax.set_title('AugFPN (Guo et al., CVPR 2020) in mmplug_agg: AugFPN neck, '
                 'SoftRoIExtractor, ConsistentSupervisionRoIHead', fontsize=10)
    out = osp.join(osp.dirname(osp.abspath(__file__)), 'augfpn.png')
    fig.savefig(out, dpi=90, bbox_inches='tight')
    print(out)


if __name__ == '__main__':
    main()
