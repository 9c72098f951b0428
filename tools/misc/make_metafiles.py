"""Write the model-zoo metadata that ``mim search mmplug_agg`` reads.

    python tools/misc/make_metafiles.py [--check]

One ``configs/metafiles/<method>/metafile.yml`` per method (OpenMMLab's format: a
collection with its paper and docs page, and one model per config) and
``model-index.yml`` importing them. Every config of ``configs/`` except the demo
variants is listed; its task, training data, schedule and detector/segmentor
type are read from the config itself, so re-running this after adding a config
is all it takes. ``--check`` writes nothing and exits 1 when a file would change.
"""
import argparse
import os.path as osp
import sys
from pathlib import Path
from typing import Dict, List

from mmengine.config import Config

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / 'configs'
METAFILE_DIR = CONFIG_DIR / 'metafiles'

# method key -> (collection name, paper title, paper URL, docs page, architecture tags)
METHODS: Dict[str, tuple] = {
    'baselines': ('Baselines', 'Feature Pyramid Networks for Object Detection',
                  'https://arxiv.org/abs/1612.03144', 'README.md', ['ResNet', 'FPN', 'HRNet']),
    'dla': ('DLA', 'Deep Layer Aggregation', 'https://arxiv.org/abs/1707.06484', 'docs/dla.md',
            ['DLA', 'HDA', 'IDA', 'DLA-Up']),
    'hrnetv2': ('HRNetV2', 'High-Resolution Representations for Labeling Pixels and Regions',
                'https://arxiv.org/abs/1904.04514', 'docs/hrnetv2.md',
                ['HRNet', 'HRNetV2 head', 'HRNetV2p']),
    'augfpn': ('AugFPN', 'AugFPN: Improving Multi-scale Feature Learning for Object Detection',
               'https://arxiv.org/abs/1912.05384', 'docs/augfpn.md',
               ['AugFPN', 'Residual Feature Augmentation', 'Soft RoI Selection',
                'Consistent Supervision']),
    'detectors': ('DetectoRS RFP', 'DetectoRS: Detecting Objects with Recursive Feature Pyramid '
                  'and Switchable Atrous Convolution', 'https://arxiv.org/abs/2006.02334',
                  'docs/rfp.md', ['Recursive Feature Pyramid', 'ASPP',
                                  'Switchable Atrous Convolution']),
    'bifpn': ('BiFPN', 'EfficientDet: Scalable and Efficient Object Detection',
              'https://arxiv.org/abs/1911.09070', 'docs/bifpn.md', ['BiFPN', 'EfficientNet']),
    'deeplab': ('DeepLab', 'DeepLab: Semantic Image Segmentation with Deep Convolutional Nets, '
                'Atrous Convolution, and Fully Connected CRFs', 'https://arxiv.org/abs/1606.00915',
                'docs/deeplab.md', ['Atrous Convolution', 'ASPP', 'Dense CRF']),
    'panet': ('PANet', 'Path Aggregation Network for Instance Segmentation',
              'https://arxiv.org/abs/1803.01534', 'docs/panet.md',
              ['PAFPN', 'Adaptive Feature Pooling']),
    'shape_adaptor': ('Shape Adaptor', 'Shape Adaptor: A Learnable Resizing Module',
                      'https://link.springer.com/chapter/10.1007/978-3-030-58610-2_39',
                      'docs/shape_adaptor.md', ['Shape Adaptor']),
}
BASELINES = ('fpn_faster_rcnn_r50', 'fcn_hrnet_w18_cityscapes_512x1024_80k')
# Config-name prefix -> method, first match wins (so 'hrnetv2' is tried before 'dla').
PREFIXES = (('augfpn', 'augfpn'), ('rfp_', 'detectors'), ('detectors_', 'detectors'),
            ('bifpn', 'bifpn'), ('efficientdet', 'bifpn'), ('deeplab', 'deeplab'),
            ('panet', 'panet'), ('shape_adaptor', 'shape_adaptor'), ('hrnetv2', 'hrnetv2'),
            ('dla', 'dla'))


def method_of(stem: str) -> str:
    if stem in BASELINES:
        return 'baselines'
    for prefix, method in PREFIXES:
        if stem.startswith(prefix):
            return method
    raise SystemExit(f'error: configs/{stem}.py matches no method; add its prefix to PREFIXES '
                     f'in {osp.relpath(__file__, REPO)}')


def quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# Dataset class of a config's training set -> the name metafiles give it.
TRAINING_DATA = {'CocoDataset': 'COCO', 'CityscapesDataset': 'Cityscapes',
                 'PascalVOCDataset': 'PASCAL VOC 2012'}


def dataset_types(dataset: dict) -> List[str]:
    # Wrappers (ConcatDataset for VOC + SBD, RepeatDataset, ...) name their parts inside.
    parts = dataset.get('datasets') or ([dataset['dataset']] if 'dataset' in dataset else [])
    if parts:
        return [name for part in parts for name in dataset_types(part)]
    return [dataset['type']]


def training_data(stem: str, cfg: Config) -> str:
    names = {TRAINING_DATA.get(kind) for kind in dataset_types(cfg.train_dataloader.dataset)}
    if None in names or len(names) != 1:
        raise SystemExit(f'error: configs/{stem}.py trains on '
                         f'{dataset_types(cfg.train_dataloader.dataset)}; '
                         f'add its dataset class to TRAINING_DATA in {osp.relpath(__file__, REPO)}')
    return names.pop()


def model_entry(stem: str, collection: str) -> List[str]:
    cfg = Config.fromfile(str(CONFIG_DIR / f'{stem}.py'))
    lines = [f'  - Name: {stem}', f'    In Collection: {quoted(collection)}',
             f'    Config: configs/{stem}.py', '    Metadata:',
             f'      Training Data: {training_data(stem, cfg)}']
    train_cfg = cfg.get('train_cfg') or {}
    if 'max_epochs' in train_cfg:
        lines.append(f"      Epochs: {train_cfg['max_epochs']}")
    if 'max_iters' in train_cfg:
        lines.append(f"      Iterations: {train_cfg['max_iters']}")
    lines += ['      Architecture:', f'        - {cfg.model.type}']
    return lines


def render(method: str, stems: List[str]) -> str:
    collection, title, url, readme, tags = METHODS[method]
    lines = ['Collections:', f'  - Name: {quoted(collection)}', '    Metadata:',
             '      Architecture:', *[f'        - {quoted(tag)}' for tag in tags], '    Paper:',
             f'      Title: {quoted(title)}', f'      URL: {url}', f'    README: {readme}', '',
             'Models:']
    for stem in stems:
        lines += model_entry(stem, collection)
    return '\n'.join(lines) + '\n'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true',
                        help='exit 1 if a file is out of date instead of writing it')
    args = parser.parse_args()
    stems = sorted(p.stem for p in CONFIG_DIR.glob('*.py') if not p.stem.endswith('_demo'))
    by_method: Dict[str, List[str]] = {}
    for stem in stems:
        by_method.setdefault(method_of(stem), []).append(stem)
    files = {METAFILE_DIR / method / 'metafile.yml': render(method, names)
             for method, names in sorted(by_method.items())}
    files[REPO / 'model-index.yml'] = 'Import:\n' + ''.join(
        f'  - {path.relative_to(REPO)}\n' for path in files)
    stale = [path for path, text in files.items()
             if not path.is_file() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f'out of date: {path.relative_to(REPO)}')
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path])
        print(f'wrote {path.relative_to(REPO)}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
