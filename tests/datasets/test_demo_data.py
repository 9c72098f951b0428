"""Tests of the synthetic demo dataset: content, COCO/mmdet/mmseg readability, and the
guards that keep a half-written or mismatched folder from being used silently."""
import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Dict

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from mmplug_agg.datasets import (DEMO_CLASSES, DEMO_SEG_CLASSES, DEMO_SEG_PALETTE,
                                 check_demo_data, ensure_demo_data, render_scene)
from mmplug_agg.datasets.demo_data import (MAX_SHAPES, MIN_VISIBLE_AREA, encode_segmentation,
                                           image_rng)

SMALL = dict(num_train=6, num_val=3, size=128, seed=0)
SIZE = SMALL['size']
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory) -> Path:
    """One small dataset shared by the read-only tests (generation is the slow part)."""
    return Path(ensure_demo_data(str(tmp_path_factory.mktemp('demo') / 'demo'), **SMALL))


def file_hashes(root: Path) -> Dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob('*')) if path.is_file()
    }


def scenes(count: int):
    return [render_scene(image_rng(0, 'train', index), SIZE) for index in range(count)]


# ------------------------------------------------------------------- content

def test_same_seed_gives_identical_files(demo_root, tmp_path):
    again = ensure_demo_data(str(tmp_path / 'again'), **SMALL)
    assert file_hashes(Path(again)) == file_hashes(demo_root)
    other = ensure_demo_data(str(tmp_path / 'other'), **dict(SMALL, seed=1))
    assert file_hashes(Path(other)) != file_hashes(demo_root)


def test_counts_do_not_shift_other_images(demo_root, tmp_path):
    fewer = Path(ensure_demo_data(str(tmp_path / 'fewer'), **dict(SMALL, num_train=2)))
    for rel in ('images/train/000001.png', 'seg/train/000001.png', 'images/val/000002.png'):
        assert (fewer / rel).read_bytes() == (demo_root / rel).read_bytes()


def test_layout_and_meta(demo_root):
    meta = json.loads((demo_root / 'meta.json').read_text())
    assert meta['params'] == SMALL
    assert meta['classes'] == list(DEMO_CLASSES)
    assert not Path(str(demo_root) + '.partial').exists()
    for split, count in (('train', SMALL['num_train']), ('val', SMALL['num_val'])):
        assert len(list((demo_root / 'images' / split).glob('*.png'))) == count
        assert len(list((demo_root / 'seg' / split).glob('*.png'))) == count


@pytest.mark.parametrize('split', ['train', 'val'])
def test_coco_annotations_match_label_maps(demo_root, split):
    coco = COCO(str(demo_root / 'annotations' / f'instances_{split}.json'))
    assert [coco.cats[i]['name'] for i in sorted(coco.cats)] == list(DEMO_CLASSES)
    assert sorted(coco.cats) == [1, 2, 3, 4]
    for image_id, info in coco.imgs.items():
        label = cv2.imread(str(demo_root / 'seg' / split / info['file_name']),
                           cv2.IMREAD_UNCHANGED)
        image = cv2.imread(str(demo_root / 'images' / split / info['file_name']))
        assert label.shape == (info['height'], info['width']) == image.shape[:2]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        assert 1 <= len(anns) <= MAX_SHAPES
        covered = np.zeros(label.shape, dtype=bool)
        for ann in anns:
            x, y, w, h = ann['bbox']
            assert x >= 0 and y >= 0 and x + w <= info['width'] and y + h <= info['height']
            mask = coco.annToMask(ann).astype(bool)
            ys, xs = np.nonzero(mask)
            decoded_box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
            assert np.abs(decoded_box - [x, y, x + w, y + h]).max() <= 1
            assert mask.sum() == ann['area']  # polygons trace pixel edges: exact
            assert ann['area'] >= MIN_VISIBLE_AREA and ann['iscrowd'] == 0
            assert (label[mask] == ann['category_id']).all()
            assert not (covered & mask).any(), 'visible masks must not overlap'
            covered |= mask
        assert (label[~covered] == 0).all()


def test_segmentation_is_exact_polygons_or_rle_for_holes():
    from mmdet.datasets.transforms import LoadAnnotations
    star = np.zeros((40, 40), dtype=np.uint8)
    cv2.fillPoly(star, [np.array([[20, 2], [25, 15], [38, 16], [27, 24], [31, 37], [20, 29],
                                  [9, 37], [13, 24], [2, 16], [15, 15]], dtype=np.int32)], 1)
    ring = np.zeros((40, 40), dtype=np.uint8)
    cv2.circle(ring, (20, 20), 15, 1, thickness=-1)
    cv2.circle(ring, (20, 20), 6, 0, thickness=-1)
    assert isinstance(encode_segmentation(star.astype(bool)), list)
    assert isinstance(encode_segmentation(ring.astype(bool)), dict)
    for mask in (star, ring):
        decoded = LoadAnnotations()._poly2mask(encode_segmentation(mask.astype(bool)), 40, 40)
        np.testing.assert_array_equal(decoded, mask)


def test_scene_labels_agree_with_instances():
    for image, label, instances in scenes(10):
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
        expected = np.zeros((SIZE, SIZE), dtype=np.uint8)
        for instance in instances:
            assert instance.mask.sum() >= MIN_VISIBLE_AREA
            assert instance.mask.sum() <= instance.full_area
            expected[instance.mask] = instance.class_index + 1
        np.testing.assert_array_equal(label, expected)


def test_scenes_have_occlusion_and_all_classes():
    instances = [instance for _, _, found in scenes(20) for instance in found]
    assert any(instance.mask.sum() < instance.full_area for instance in instances)
    assert {instance.class_index for instance in instances} == set(range(len(DEMO_CLASSES)))


def test_shape_sizes_span_tiny_to_large():
    instances = [instance for _, _, found in scenes(20) for instance in found]
    sides = []
    for instance in instances:
        ys, xs = np.nonzero(instance.mask)
        sides.append(max(np.ptp(xs), np.ptp(ys)) + 1)
    assert min(instance.full_area for instance in instances) <= 64  # about 8 x 8 px
    assert max(sides) >= 0.45 * SIZE


def test_backgrounds_vary():
    corners = [image[:16, :16].reshape(-1, 3).mean(axis=0) for image, _, _ in scenes(6)]
    assert np.ptp(np.array(corners), axis=0).max() > 20


# --------------------------------------------------------------------- guards

def test_check_reports_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match='--force'):
        check_demo_data(str(tmp_path / 'absent'))


def test_half_written_folder_is_refused_until_forced(tmp_path):
    out = tmp_path / 'demo'
    (out / 'images' / 'train').mkdir(parents=True)
    with pytest.raises(RuntimeError, match='meta.json.*--force'):
        check_demo_data(str(out))
    with pytest.raises(RuntimeError, match='--force'):
        ensure_demo_data(str(out), **SMALL)
    ensure_demo_data(str(out), **SMALL, force=True)
    check_demo_data(str(out))


def test_missing_annotation_file_is_reported(tmp_path):
    out = Path(ensure_demo_data(str(tmp_path / 'demo'), **dict(SMALL, num_train=1, num_val=1)))
    (out / 'annotations' / 'instances_val.json').unlink()
    with pytest.raises(RuntimeError, match='instances_val.json.*--force'):
        check_demo_data(str(out))


def test_mismatched_parameters_raise_and_force_regenerates(demo_root, tmp_path):
    out = str(tmp_path / 'demo')
    ensure_demo_data(out, **SMALL)
    with pytest.raises(RuntimeError, match='--num-train 4 .*--force'):
        ensure_demo_data(out, **dict(SMALL, num_train=4))
    ensure_demo_data(out, **dict(SMALL, num_train=4), force=True)
    assert json.loads(Path(out, 'meta.json').read_text())['params']['num_train'] == 4
    assert len(list(Path(out, 'images', 'train').glob('*.png'))) == 4


def test_matching_folder_is_reused_and_stale_partial_ignored(tmp_path):
    out = tmp_path / 'demo'
    params = dict(SMALL, num_train=1, num_val=1)
    Path(str(out) + '.partial').mkdir()  # left over by an interrupted run
    ensure_demo_data(str(out), **params)
    assert not Path(str(out) + '.partial').exists()
    stamp = os.stat(out / 'meta.json').st_mtime_ns
    assert ensure_demo_data(str(out), **params) == str(out)
    assert os.stat(out / 'meta.json').st_mtime_ns == stamp


def test_invalid_parameters_raise(tmp_path):
    with pytest.raises(ValueError, match='size'):
        ensure_demo_data(str(tmp_path / 'demo'), size=8)


def test_cli_prints_one_line_on_error(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location(
        'make_demo_data', REPO_ROOT / 'tools' / 'misc' / 'make_demo_data.py')
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = tmp_path / 'demo'
    out.mkdir()
    monkeypatch.setattr('sys.argv', ['make_demo_data.py', '--out', str(out), '--size', '64'])
    assert cli.main() == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and '--force' in err
    monkeypatch.setattr('sys.argv', ['make_demo_data.py', '--out', str(out), '--size', '64',
                                     '--num-train', '1', '--num-val', '1', '--force'])
    assert cli.main() == 0
    check_demo_data(str(out))


# ---------------------------------------------------------------- toolboxes

def test_mmdet_coco_dataset_reads_it(demo_root):
    from mmdet.datasets import CocoDataset
    from mmdet.utils import register_all_modules
    register_all_modules()
    dataset = CocoDataset(data_root=str(demo_root), ann_file='annotations/instances_train.json',
                          data_prefix=dict(img='images/train/'),
                          metainfo=dict(classes=DEMO_CLASSES), pipeline=[])
    assert len(dataset) == SMALL['num_train']
    info = dataset.get_data_info(0)
    assert os.path.isfile(info['img_path'])
    assert info['instances'] and all(0 <= inst['bbox_label'] < len(DEMO_CLASSES)
                                     for inst in info['instances'])


def test_mmseg_dataset_reads_it(demo_root):
    from mmseg.datasets import BaseSegDataset
    dataset = BaseSegDataset(data_root=str(demo_root),
                             data_prefix=dict(img_path='images/train', seg_map_path='seg/train'),
                             img_suffix='.png', seg_map_suffix='.png',
                             metainfo=dict(classes=DEMO_SEG_CLASSES, palette=DEMO_SEG_PALETTE),
                             pipeline=[])
    assert len(dataset) == SMALL['num_train']
    info = dataset.get_data_info(0)
    assert os.path.isfile(info['img_path']) and os.path.isfile(info['seg_map_path'])
    assert len(dataset.metainfo['palette']) == len(DEMO_SEG_CLASSES)
