"""Draw docs/diagrams/dla.png and dla_up.png from a built DLA and the DLA-Up rule.

    python docs/diagrams/make_dla_diagram.py [--arch dla34] [--out docs/diagrams/dla.png]
        [--up-out docs/diagrams/dla_up.png]

dla.png walks ``DLA(arch)`` the way its forward pass runs: the stem and the conv
levels are wide boxes, every residual block a small box and every root
(aggregation node) a circle holding the number of maps it concatenates. Edge
colours tell the plain chain from a block feeding its own root, from a subtree
output handed down to a deeper root (HDA), and from a stage input handed to the
level root of the next tree (IDA). Channel counts are checked against each
root conv's ``in_channels``.

dla_up.png is DLA-Up over levels 2-5: rows are the levels (stride 32 on top),
columns the IDA-Up stages applied from deep to shallow, circles the nodes.
"""
import argparse
import os
import sys
from typing import Dict, List, Tuple

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import torch.nn as nn  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

from mmplug_agg.models.backbones import DLA  # noqa: E402
from mmplug_agg.models.backbones.dla import Tree  # noqa: E402

EDGE_COLOURS = {'chain': '#606060', 'root': '#1f77b4', 'hda': '#ff7f0e', 'ida': '#d62728'}
EDGE_LABELS = {
    'chain': 'chain (stage output -> next block)',
    'root': 'block output -> its root',
    'hda': 'HDA: subtree output handed down to a deeper root',
    'ida': 'IDA: stage input (max-pooled) -> level root',
}
# Peak height of the arc drawn for the edges that skip over nodes.
ARC_HEIGHTS = {'hda': 0.45, 'ida': 0.95}
UP_COLOURS = {'up': '#1f77b4', 'same': '#606060'}
BOX_W, BOX_H, CONV_W, ROOT_R = 0.62, 0.42, 0.8, 0.24
NODE_STEP = 1.0


class Graph:
    """Nodes and edges of the DLA forward pass, in execution order."""

    def __init__(self) -> None:
        self.nodes: List[dict] = []
        self.edges: List[Tuple[int, int, str]] = []

    def add(self, kind: str, label: str, stage: int, channels: int, **extra) -> int:
        self.nodes.append(dict(kind=kind, label=label, stage=stage, channels=channels, **extra))
        return len(self.nodes) - 1

    def edge(self, source: int, target: int, kind: str) -> None:
        self.edges.append((source, target, kind))


def block_label(block: nn.Module) -> str:
    """'basic', 'bneck' or 'bneckX' (grouped), with 's2' under a strided block."""
    convs = [m for m in block.modules() if isinstance(m, nn.Conv2d)]
    if type(block).__name__ == 'DLABasicBlock':
        name = 'basic'
    else:
        name = 'bneckX' if any(conv.groups > 1 for conv in convs) else 'bneck'
    stride = max(conv.stride[0] for conv in convs)
    return f'{name}\ns{stride}' if stride > 1 else name


def conv_stage_label(stage: nn.Module, kernel: str) -> str:
    convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
    stride = max(conv.stride[0] for conv in convs)
    count = f'{len(convs)}x ' if len(convs) > 1 else ''
    return f'{count}{kernel}\nconv' + (f' s{stride}' if stride > 1 else '')


def add_tree(graph: Graph, tree: Tree, source: int, children: List[Tuple[int, str]],
             stage: int) -> int:
    """Add ``tree`` as its forward runs it; return the node of its output."""
    if tree.level_root:
        children = [*children, (source, 'ida')]
    if tree.depth > 1:
        first = add_tree(graph, tree.tree1, source, [], stage)
        return add_tree(graph, tree.tree2, first, [*children, (first, 'hda')], stage)
    channels = tree.root.conv.out_channels
    block1 = graph.add('block', block_label(tree.tree1), stage, channels)
    graph.edge(source, block1, 'chain')
    block2 = graph.add('block', block_label(tree.tree2), stage, channels)
    graph.edge(block1, block2, 'chain')
    inputs = [block2, block1, *(child for child, _ in children)]
    concatenated = sum(graph.nodes[i]['channels'] for i in inputs)
    if concatenated != tree.root.conv.in_channels:
        raise RuntimeError(f'stage {stage}: the drawn root concatenates {concatenated} channels, '
                           f'its conv takes {tree.root.conv.in_channels}')
    root = graph.add('root', str(len(inputs)), stage, channels,
                     hda=sum(kind == 'hda' for _, kind in children),
                     kernel=tree.root.conv.kernel_size[0])
    graph.edge(block1, root, 'root')
    graph.edge(block2, root, 'root')
    for child, kind in children:
        graph.edge(child, root, kind)
    return root


def level_strides(model: DLA) -> List[int]:
    """Output stride of each level (1, 2, 4, 8, 16, 32 by default)."""
    strides, stride = [], 1
    for step in model.strides:
        stride *= step
        strides.append(stride)
    return strides


def backbone_graph(model: DLA) -> Tuple[Graph, List[dict]]:
    """The graph of ``model`` and, per stage, its name, stride, channels and depth."""
    graph = Graph()
    stages = [dict(name='stem', detail='base_layer', stride=1, channels=model.channels[0])]
    last = graph.add('conv', conv_stage_label(model.base_layer, '7x7'), 0, model.channels[0])
    for level, stride in enumerate(level_strides(model)):
        module = getattr(model, f'level{level}')
        stage = dict(name=f'level{level}', stride=stride, channels=model.channels[level])
        if isinstance(module, Tree):
            stage['detail'] = f'tree depth {module.depth}'
            last = add_tree(graph, module, last, [], level + 1)
        else:
            stage['detail'] = 'conv level'
            conv = graph.add('conv', conv_stage_label(module, '3x3'), level + 1,
                             model.channels[level])
            graph.edge(last, conv, 'chain')
            last = conv
        stages.append(stage)
    return graph, stages


def layout(graph: Graph) -> Dict[int, Tuple[float, float]]:
    """Left to right in execution order; roots above the blocks, higher the more they fuse."""
    positions = {}
    x = 0.0
    previous = None
    for index, node in enumerate(graph.nodes):
        if previous is not None:
            step = 0.6 if node['kind'] == 'root' else 0.9
            if node['stage'] != previous['stage']:
                step += 0.45
            if node['kind'] == 'conv' or previous['kind'] == 'conv':
                step += 0.15
            x += step
        y = 1.0 + 0.5 * node['hda'] if node['kind'] == 'root' else 0.0
        positions[index] = (x, y)
        previous = node
    return positions


def arrow(ax, start, end, colour, patch_a=None, patch_b=None, rad=0.0, lw=1.2):
    """An arrow clipped to the outlines of the two node patches it joins."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle='-|>', mutation_scale=8, color=colour,
                                 lw=lw, patchA=patch_a, patchB=patch_b,
                                 shrinkA=1, shrinkB=1, connectionstyle=f'arc3,rad={rad}',
                                 zorder=2))


def data_axes(xlim, ylim, inches_per_unit: float, below: float, above: float):
    """A figure whose axes show ``xlim`` x ``ylim`` at equal aspect, with room for
    ``below`` inches of legend and ``above`` inches of title."""
    width = (xlim[1] - xlim[0]) * inches_per_unit
    height = (ylim[1] - ylim[0]) * inches_per_unit
    total = height + below + above
    fig = plt.figure(figsize=(width, total), dpi=100)
    ax = fig.add_axes((0.0, below / total, 1.0, height / total))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect('equal')
    ax.axis('off')
    return fig, ax


def arc_rad(start, end, height: float) -> float:
    """``arc3`` bend whose peak lies ``height`` above the chord (equal aspect)."""
    length = ((end[0] - start[0])**2 + (end[1] - start[1])**2)**0.5
    return -2 * height / length


def draw_backbone(model: DLA, arch: str, out: str) -> None:
    graph, stages = backbone_graph(model)
    positions = layout(graph)
    xs = [x for x, _ in positions.values()]
    top = max(y for _, y in positions.values()) + ARC_HEIGHTS['ida'] + 0.35
    left, right, bottom = min(xs) - 0.7, max(xs) + 0.7, -1.5
    # At least 14 inches wide; deep archs (dla102, dla169) grow wider instead of denser.
    fig, ax = data_axes((left, right), (bottom, top), max(14.0 / (right - left), 0.6),
                        below=0.5, above=0.35)

    # One band per stage, labelled underneath.
    for index, stage in enumerate(stages):
        members = [positions[i][0] for i, n in enumerate(graph.nodes) if n['stage'] == index]
        x0, x1 = min(members) - 0.42, max(members) + 0.42
        ax.add_patch(Rectangle((x0, bottom + 0.05), x1 - x0, top - bottom - 0.1, zorder=0,
                               facecolor='#f3f3f3' if index % 2 else '#e6ecf5', edgecolor='none'))
        ax.text((x0 + x1) / 2, -0.42, f"{stage['name']}\nstride {stage['stride']}, "
                f"{stage['channels']} ch\n{stage['detail']}", ha='center', va='top',
                fontsize=7.5, linespacing=1.25)

    patches = {}
    for index, node in enumerate(graph.nodes):
        x, y = positions[index]
        if node['kind'] == 'root':
            patch = Circle((x, y), ROOT_R, facecolor='#fde0c5', edgecolor='black', lw=1.0,
                           zorder=3)
            fontsize = 8
        else:
            w = CONV_W if node['kind'] == 'conv' else BOX_W
            colour = '#d9d9d9' if node['kind'] == 'conv' else '#cfe0f3'
            patch = FancyBboxPatch((x - w / 2, y - BOX_H / 2), w, BOX_H,
                                   boxstyle='round,pad=0.0,rounding_size=0.05',
                                   facecolor=colour, edgecolor='black', lw=0.9, zorder=3)
            fontsize = 6.5
        ax.add_patch(patch)
        patches[index] = patch
        ax.text(x, y, node['label'], ha='center', va='center', fontsize=fontsize, zorder=4,
                linespacing=1.0)

    for source, target, kind in graph.edges:
        start, end = positions[source], positions[target]
        rad = arc_rad(start, end, ARC_HEIGHTS[kind]) if kind in ARC_HEIGHTS else 0.0
        arrow(ax, start, end, EDGE_COLOURS[kind], patches[source], patches[target], rad,
              lw=1.5 if kind in ARC_HEIGHTS else 1.1)

    root_formula = 'x2 + ' if model.residual_root else ''
    kernel = next(n['kernel'] for n in graph.nodes if n['kind'] == 'root')
    handles = [
        Line2D([], [], marker='s', color='black', lw=0, markerfacecolor='#d9d9d9',
               markersize=9, label='stem / conv level'),
        Line2D([], [], marker='s', color='black', lw=0, markerfacecolor='#cfe0f3',
               markersize=9, label=f'residual block ({model.block})'),
        Line2D([], [], marker='o', color='black', lw=0, markerfacecolor='#fde0c5',
               markersize=10, label='root; number = maps concatenated'),
    ] + [Line2D([], [], color=EDGE_COLOURS[k], lw=1.6, label=EDGE_LABELS[k])
         for k in EDGE_COLOURS]
    ax.legend(handles=handles, loc='upper left', bbox_to_anchor=(0.005, 0.0), ncol=4,
              fontsize=7.5, frameon=False, columnspacing=1.5, handletextpad=0.5,
              borderaxespad=0.2)
    ax.set_title(f"DLA('{arch}'): HDA trees (levels 2-5) chained by IDA level roots.   "
                 f'root: ReLU({root_formula}BN(conv{kernel}x{kernel}(cat[x2, x1, *children])))'
                 f'  (x1, x2: its two blocks)', fontsize=9)
    save(fig, out)


def dla_up_topology(num_inputs: int) -> List[dict]:
    """Per DLA-Up stage: its level and its nodes as (node, previous, new input).

    Inputs are ``('in', j)`` (finest first), nodes ``('node', stage, k)``. Stage
    ``i`` takes the maps from index ``num_inputs - 2 - i`` on; its first map is
    an input, the others are one level coarser (inputs or the previous stage's
    nodes). Its nodes replace those others for the next stage.
    """
    maps = [('in', j) for j in range(num_inputs)]
    stages = []
    for index in range(num_inputs - 1):
        level = num_inputs - 2 - index
        previous = maps[level]
        nodes = []
        for k, new in enumerate(maps[level + 1:]):
            node = ('node', index, k)
            nodes.append((node, previous, new))
            previous = node
        maps[level + 1:] = [node for node, _, _ in nodes]
        stages.append(dict(level=level, nodes=nodes))
    return stages


def node_level(key, stages: List[dict]) -> int:
    return key[1] if key[0] == 'in' else stages[key[1]]['level']


def check_against_dla_up(stages: List[dict], channels: List[int]) -> None:
    """Compare with ``DLAUp`` where that module exists; warn (and draw the rule) if it differs."""
    # Per stage: the widths of the maps it takes (its first map, then one per
    # node) and their upsampling factors.
    drawn = [([channels[s['level']]] + [channels[node_level(new, stages)]
                                        for _, _, new in s['nodes']],
              [1] + [2] * len(s['nodes'])) for s in stages]
    try:
        from mmplug_agg.models.layers.ida_up import DLAUp
        built = [(list(stage.in_channels), list(stage.up_factors))
                 for stage in DLAUp(channels).stages]
    except Exception as error:  # the module is optional; the rule is what is drawn
        print(f'DLAUp not compared ({type(error).__name__}: {error})', file=sys.stderr)
        return
    if drawn != built:
        print(f'warning: DLAUp stages {built} differ from the drawn rule {drawn}',
              file=sys.stderr)
    else:
        print('DLAUp stages match the drawn topology')


def draw_dla_up(model: DLA, arch: str, out: str, first_level: int = 2) -> None:
    channels = list(model.channels[first_level:])
    strides = level_strides(model)[first_level:]
    num_inputs = len(channels)
    stages = dla_up_topology(num_inputs)
    check_against_dla_up(stages, channels)

    # A stage lives on one row, so its nodes sit side by side. The gap before
    # a stage is short: the edge from the previous stage's node k - 1 down to
    # node k then passes midway between two nodes instead of grazing one.
    positions = {('in', j): (0.0, float(j)) for j in range(num_inputs)}
    column_x = []
    x = 1.6
    for index, stage in enumerate(stages):
        column_x.append(x)
        for node, _, _ in stage['nodes']:
            positions[node] = (x + NODE_STEP * node[2], float(stage['level']))
        # Stage 0 has a single node and no edge runs past it: room for the labels.
        x += NODE_STEP * (len(stage['nodes']) - 1) + (1.0 if index == 0 else 0.3)

    right = max(px for px, _ in positions.values()) + 1.6
    fig, ax = data_axes((-1.7, right), (-0.45, num_inputs - 0.05), 0.85, below=0.55, above=0.35)

    patches = {}
    for j in range(num_inputs):
        ax.plot([0.0, right], [j, j], color='#eeeeee', lw=6, zorder=0, solid_capstyle='butt')
        patch = FancyBboxPatch((-0.45, j - 0.22), 0.9, 0.44,
                               boxstyle='round,pad=0.0,rounding_size=0.05',
                               facecolor='#cfe0f3', edgecolor='black', lw=0.9, zorder=3)
        ax.add_patch(patch)
        patches[('in', j)] = patch
        ax.text(0, j, f'level{first_level + j}', ha='center', va='center', fontsize=7.5,
                zorder=4)
        ax.text(-0.6, j, f'stride {strides[j]}\n{channels[j]} ch', ha='right',
                va='center', fontsize=7.5)
    final = stages[-1]['nodes'][-1][0]
    for index, stage in enumerate(stages):
        for node, _, _ in stage['nodes']:
            px, py = positions[node]
            is_output = node == final
            patch = Circle((px, py), 0.25, facecolor='#fde0c5', edgecolor='black',
                           lw=2.6 if is_output else 1.0, zorder=3)
            ax.add_patch(patch)
            patches[node] = patch
            ax.text(px, py, f'{index}.{node[2]}', ha='center', va='center', fontsize=7.5,
                    zorder=4)
        level = stage['level']
        ax.text(column_x[index] + 0.5 * (len(stage['nodes']) - 1), num_inputs - 0.45,
                f'stage {index} (IDAUp)\n-> stride {strides[level]}',
                ha='center', va='center', fontsize=7.5)
    for stage in stages:
        for node, previous, new in stage['nodes']:
            for source in (previous, new):
                kind = 'same' if node_level(source, stages) == stage['level'] else 'up'
                start, end = positions[source], positions[node]
                arrow(ax, start, end, UP_COLOURS[kind], patches[source], patches[node], lw=1.3)
    fx, fy = positions[final]
    ax.annotate(f'DLA-Up output\nstride {strides[0]}, {channels[0]} ch', xy=(fx + 0.27, fy),
                xytext=(fx + 0.55, fy + 0.55), fontsize=7.5, ha='left', va='bottom',
                arrowprops=dict(arrowstyle='-|>', color='black', lw=1.0))
    ax.legend(handles=[
        Line2D([], [], color=UP_COLOURS['up'], lw=1.6,
               label='upsample 2x (1x1 projection first where widths differ)'),
        Line2D([], [], color=UP_COLOURS['same'], lw=1.6, label='same resolution'),
        Line2D([], [], marker='o', color='black', lw=0, markerfacecolor='#fde0c5', markersize=10,
               label='node i.k: 3x3 conv(cat[previous, next input])'),
        Line2D([], [], marker='o', color='black', lw=0, markerfacecolor='#fde0c5', markersize=10,
               markeredgewidth=2.6, label='final output'),
    ], loc='upper center', bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=7.5, frameon=False,
              borderaxespad=0.2)
    ax.set_title(f'DLA-Up on {arch} levels {first_level}-{first_level + num_inputs - 1}: '
                 f'IDA-Up stages from deep to shallow (DLAUp({channels}))', fontsize=9)
    save(fig, out)


def save(fig, out: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, pil_kwargs=dict(optimize=True))
    plt.close(fig)
    print(f'wrote {out} ({os.path.getsize(out) / 1024:.0f} KB)')


def main() -> None:
    here = os.path.dirname(__file__)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--arch', default='dla34', help='a key of DLA_ARCHS')
    parser.add_argument('--out', default=os.path.join(here, 'dla.png'),
                        help='the backbone picture')
    parser.add_argument('--up-out', default=os.path.join(here, 'dla_up.png'),
                        help='the DLA-Up picture')
    args = parser.parse_args()
    model = DLA(args.arch)
    draw_backbone(model, args.arch, args.out)
    draw_dla_up(model, args.arch, args.up_out)


if __name__ == '__main__':
    main()
