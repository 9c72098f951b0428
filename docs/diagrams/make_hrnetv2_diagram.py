"""Draw docs/diagrams/hrnetv2.png: the HRNetV2 head and the HRNetV2p neck.

Run from anywhere: ``python docs/diagrams/make_hrnetv2_diagram.py``. Needs only
matplotlib; the image is a small palette PNG (well under 200 KB).
"""
from pathlib import Path

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402

OUT = Path(__file__).resolve().with_name('hrnetv2.png')
BRANCH_COLOURS = ['#d62728', '#ff7f0e', '#2ca02c', '#1f77b4']
GREY = '#555555'


def box(ax, x, y, w, h, text, colour='#eeeeee', fontsize=8, edge=GREY):
    ax.add_patch(Rectangle((x, y), w, h, facecolor=colour, edgecolor=edge, linewidth=1))
    ax.text(x + w / 2, y + h / 2, text, ha='center', va='center', fontsize=fontsize)


def arrow(ax, start, end, text=None, colour=GREY):
    ax.add_patch(
        FancyArrowPatch(start, end, arrowstyle='-|>', mutation_scale=9, color=colour, linewidth=1))
    if text:  # a third of the way along, above the line
        ax.text(start[0] + (end[0] - start[0]) / 3,
                start[1] + (end[1] - start[1]) / 3 + 0.1,
                text,
                ha='center',
                va='bottom',
                fontsize=6.5,
                color=colour)


def branches(ax, top):
    """Four branches (1/4 .. 1/32), drawn shrinking; returns their right edges."""
    ends = []
    y = top
    for i, colour in enumerate(BRANCH_COLOURS):
        side = 1.2 / 2**(i * 0.5)
        y -= side + 0.25
        box(ax, 0.2, y, side, side, f'1/{4 * 2**i}', colour=colour, fontsize=7)
        ends.append((0.2 + side, y + side / 2))
    return ends


def concat_column(ax, ends, x, label):
    """Every branch resized to branch 0's size and stacked into one tall map."""
    top = ends[0][1] + 0.6
    height = 0.55
    for i, (end, colour) in enumerate(zip(ends, BRANCH_COLOURS)):
        y = top - (i + 1) * height
        box(ax, x, y, 1.2, height, '', colour=colour)
        arrow(ax, end, (x, y + height / 2), 'as is' if i == 0 else 'bilinear', colour=colour)
    ax.text(x + 0.6, top + 0.1, label, ha='center', va='bottom', fontsize=7.5)
    return (x + 1.2, top - 2 * height), top


def draw_head(ax):
    ax.set_title('HRNetV2Head (segmentation)', fontsize=10)
    ends = branches(ax, 5.6)
    (cx, cy), _ = concat_column(ax, ends, 2.6, 'resize to exact\nsize of 1/4, concat')
    box(ax, 4.4, cy - 0.45, 1.5, 0.9, '1x1 conv\nBN, ReLU', colour='#dddddd')
    arrow(ax, (cx, cy), (4.4, cy))
    box(ax, 6.3, cy - 0.45, 1.2, 0.9, 'dropout\n1x1 classifier', colour='#dddddd', fontsize=7)
    arrow(ax, (5.9, cy), (6.3, cy))
    ax.text(4.0,
            0.35, "mode='v1': only the 1/4 branch\n"
            'project_first: 1x1 conv per branch before resizing (same result)',
            ha='center',
            fontsize=6.5,
            color=GREY)


def draw_neck(ax):
    ax.set_title('HRNetV2pNeck (detection)', fontsize=10)
    ends = branches(ax, 5.6)
    (cx, cy), _ = concat_column(ax, ends, 2.6, 'resize, concat')
    box(ax, 4.3, cy - 0.45, 1.1, 0.9, '1x1 conv\n(+norm)', colour='#dddddd')
    arrow(ax, (cx, cy), (4.3, cy))
    y = 5.2
    for level in range(5):
        side = 0.7 / 2**(level * 0.35)
        box(ax, 5.9, y - side / 2, side, side, '', colour='#bbbbbb')
        box(ax, 6.95, y - 0.22, 1.3, 0.44, '3x3 conv (+norm)', fontsize=6)
        ax.text(8.35, y, f'P{level + 2}', va='center', fontsize=8)
        arrow(ax, (5.4, cy), (5.9, y))
        arrow(ax, (5.9 + side, y), (6.95, y))
        y -= 1.05
    ax.text(5.2, 1.2, 'pool\n(AVG/MAX)', ha='center', fontsize=6.5, color=GREY)
    ax.text(4.4,
            0.05,
            'level i: ceil(h / 2^i) x ceil(w / 2^i), AVG or MAX pooling',
            ha='center',
            fontsize=6.5,
            color=GREY)


def main():
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100)
    for ax in (left, right):
        ax.set_xlim(0, 8.9)
        ax.set_ylim(-0.1, 6.2)
        ax.set_aspect('equal')
        ax.axis('off')
    draw_head(left)
    draw_neck(right)
    fig.tight_layout()
    fig.savefig(OUT, dpi=100, pil_kwargs=dict(optimize=True))
    plt.close(fig)
    # Quantise to a small palette: the drawing has a handful of flat colours.
    from PIL import Image
    with Image.open(OUT) as image:
        image.convert('RGB').quantize(colors=64).save(OUT, optimize=True)
    print(f'wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KB)')


if __name__ == '__main__':
    main()
