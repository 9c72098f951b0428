"""Draw docs/diagrams/bifpn.png from the BiFPN topology data itself.

    python docs/diagrams/make_bifpn_diagram.py [--levels 5] [--out docs/diagrams/bifpn.png]

Columns are the passes of one cell (inputs, top-down, bottom-up), rows the pyramid
levels (P3 at the bottom for 5 levels). Edge colours tell how an input is resampled:
upsampled from the level above, max-pooled from the level below, or taken at the
same level; outputs (the newest node of each level) are drawn with a thick border.
"""
import argparse
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from mmplug_agg.models.necks.bifpn import bifpn_topology, topology_outputs  # noqa: E402

COLOURS = {'up': '#1f77b4', 'down': '#d62728', 'same': '#7f7f7f'}


def node_positions(num_levels: int, nodes):
    """(x, y) per node id: x is the pass (0 inputs, 1 top-down, 2 bottom-up), y the level."""
    positions = {i: (0.0, float(i)) for i in range(num_levels)}
    top_down = True
    previous_level = None
    for index, (level, _) in enumerate(nodes):
        if previous_level is not None and level > previous_level:
            top_down = False
        previous_level = level
        positions[num_levels + index] = (1.0 if top_down else 2.0, float(level))
    return positions


def draw(num_levels: int, out: str, first_level: int = 3) -> None:
    nodes = bifpn_topology(num_levels)
    outputs = set(topology_outputs(nodes, num_levels))
    positions = node_positions(num_levels, nodes)
    levels = {i: i for i in range(num_levels)}
    levels.update({num_levels + k: level for k, (level, _) in enumerate(nodes)})

    fig, ax = plt.subplots(figsize=(6.2, 1.0 + 0.9 * num_levels), dpi=100)
    for index, (level, inputs) in enumerate(nodes):
        x1, y1 = positions[num_levels + index]
        for source in inputs:
            x0, y0 = positions[source]
            kind = 'same' if levels[source] == level else (
                'up' if levels[source] > level else 'down')
            # Curve a same-level edge around a node that sits between its ends.
            blocked = any(px == 1.0 and py == y0 for px, py in positions.values())
            bend = 0.15 if kind == 'same' and x1 - x0 > 1 and blocked else 0.0
            ax.annotate('', xy=(x1, y1), xytext=(x0, y0),
                        arrowprops=dict(arrowstyle='-|>', color=COLOURS[kind], lw=1.4,
                                        shrinkA=11, shrinkB=11,
                                        connectionstyle=f'arc3,rad={bend}'))
    for node, (x, y) in positions.items():
        is_output = node in outputs
        ax.scatter([x], [y], s=520, zorder=3, color='white',
                   edgecolors='black', linewidths=2.6 if is_output else 1.0)
        label = f'P{first_level + levels[node]}' if node < num_levels else str(node)
        ax.text(x, y, label, ha='center', va='center', fontsize=8, zorder=4)
    ax.set_xticks([0, 1, 2], ['inputs', 'top-down', 'bottom-up'])
    ax.set_yticks(range(num_levels), [f'P{first_level + i}' for i in range(num_levels)])
    ax.set_xlim(-0.5, 2.5)
    ax.set_ylim(-0.6, num_levels - 0.4)
    for side in ('top', 'right'):
        ax.spines[side].set_visible(False)
    ax.legend(handles=[Line2D([], [], color=COLOURS['up'], label='nearest upsample'),
                       Line2D([], [], color=COLOURS['down'], label='max-pool 3/2'),
                       Line2D([], [], color=COLOURS['same'], label='same level'),
                       Line2D([], [], marker='o', color='black', lw=0, markerfacecolor='white',
                              markeredgewidth=2.6, markersize=10, label='cell output')],
              loc='upper center', bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8,
              frameon=False)
    ax.set_title(f'One BiFPN cell, {num_levels} levels (bifpn_topology({num_levels}))',
                 fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--levels', type=int, default=5)
    parser.add_argument('--out', default=os.path.join(os.path.dirname(__file__), 'bifpn.png'))
    args = parser.parse_args()
    draw(args.levels, args.out)
    print(f'wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KB)')


if __name__ == '__main__':
    main()
