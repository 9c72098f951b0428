"""A small synthetic shapes dataset for smoke tests, demos and CI.

Real datasets are large, licensed and slow to fetch; the configs and tests of
this package only need *some* images with boxes, instance masks and semantic
labels that a model can start to learn within minutes. This module draws such
scenes from a seed, without a download: the same seed gives byte-identical files
under the same numpy and OpenCV builds (other builds may round a few pixels
differently, which changes nothing that matters for a demo).

Each scene is a textured background (blended smooth noise, stripes, gradients
and checkers in muted colours) under 1 to 8 saturated shapes of the classes in
:data:`DEMO_CLASSES`, then a mild blur and pixel noise. Shapes range from about
8 px to 60% of the image side, may hang over the border and occlude each other.

Layout under ``out`` (default ``data/demo``, relative to the working directory)::

    images/train/000000.png ...        BGR images, PNG so that pixels are exact
    images/val/000000.png ...
    annotations/instances_train.json   COCO instances (category ids 1..4)
    annotations/instances_val.json
    seg/train/000000.png ...           uint8 labels: 0 background, k = class index + 1
    seg/val/000000.png ...
    meta.json                          generator parameters, written last

COCO ``file_name`` is relative to the split's image folder (``"000000.png"``),
so configs set ``data_prefix=dict(img='images/train/')`` for mmdet and
``data_prefix=dict(img_path='images/train', seg_map_path='seg/train')`` with
``img_suffix='.png', seg_map_suffix='.png'`` for mmseg, and use
:data:`DEMO_CLASSES` (mmdet) or :data:`DEMO_SEG_CLASSES` and
:data:`DEMO_SEG_PALETTE` (mmseg) as ``metainfo``.

Annotation rules:

* An instance is what stays *visible* of its shape: its ``bbox`` (tight, float
  ``[x, y, w, h]``), ``area`` (pixel count) and ``segmentation`` describe only the
  pixels that no later shape covers and that lie inside the image.
* Every kept instance shows at least :data:`MIN_VISIBLE_AREA` pixels. A shape
  with less of itself inside the image is redrawn; a shape that would push an
  earlier instance below the minimum is not drawn at all. Only kept shapes are
  painted, so images, instances and label maps always agree.
* ``segmentation`` holds polygons from ``cv2.findContours`` that trace pixel
  edges, so they decode (pycocotools, mmdet) to exactly the visible pixels. A
  visible part with a hole (a later shape inside it), or one with no polygon of
  3 or more points, is stored as compressed RLE instead, since polygons cannot
  express it exactly. mmdet's ``LoadAnnotations`` reads RLE with its default
  ``poly2mask=True`` (with ``poly2mask=False`` it ignores such instances).

Each image draws from its own generator seeded by ``(seed, split, index)``, so
changing ``num_train`` neither shifts nor changes the other images.

Generation writes into ``<out>.partial`` and renames it to ``<out>`` only when
complete, so an interrupted run never leaves a folder that looks finished. Run
it from one process (for example before launching distributed training).
"""
import json
import os
import os.path as osp
import shutil
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

DEMO_CLASSES: Tuple[str, ...] = ('circle', 'square', 'triangle', 'star')
DEMO_SEG_CLASSES: Tuple[str, ...] = ('background', ) + DEMO_CLASSES
DEMO_SEG_PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (0, 0, 0), (220, 20, 60), (0, 130, 200), (60, 180, 75), (255, 200, 0))

FORMAT_VERSION = 1  # bump whenever the generated content or layout changes
SPLITS: Tuple[str, ...] = ('train', 'val')
MIN_VISIBLE_AREA = 20
MAX_SHAPES = 8
MIN_EXTENT = 8.0  # diameter of a shape's circumscribed circle, in pixels
MAX_EXTENT_RATIO = 0.6  # largest diameter, as a fraction of the image side
CANDIDATES_PER_SHAPE = 3  # occlusion rejections a scene may spend per wanted shape
STAR_INNER_RATIO = 0.5
MIN_IMAGE_SIZE = 32
DEFAULT_OUT = 'data/demo'
DEFAULT_NUM_TRAIN = 200
DEFAULT_NUM_VAL = 50
DEFAULT_SIZE = 256
DEFAULT_SEED = 0
CLI = 'python tools/misc/make_demo_data.py'


@dataclass(frozen=True, eq=False)
class SceneInstance:
    """One kept shape of a scene.

    ``mask`` is the visible part (bool, HxW); ``full_area`` counts the shape's
    pixels inside the image before later shapes covered it, so
    ``mask.sum() < full_area`` means the instance is occluded.
    """
    class_index: int
    mask: np.ndarray
    full_area: int


@dataclass(frozen=True, eq=False)
class _Shape:
    class_index: int
    mask: np.ndarray
    color: Tuple[float, float, float]


# ---------------------------------------------------------------- randomness

def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Return the generator of one image, independent of every other image's."""
    return np.random.default_rng([seed, SPLITS.index(split), index])


def _hsv_color(rng: np.random.Generator, sat: Tuple[int, int],
               val: Tuple[int, int]) -> Tuple[float, float, float]:
    """Draw a BGR colour of random hue within the given saturation/value ranges."""
    hsv = np.array([[[rng.integers(0, 180), rng.integers(*sat), rng.integers(*val)]]],
                   dtype=np.uint8)
    bgr = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return tuple(float(c) for c in bgr)


def _background_color(rng: np.random.Generator) -> Tuple[float, float, float]:
    """Muted colours, so that the saturated shapes stand out from any background."""
    return _hsv_color(rng, sat=(0, 90), val=(40, 230))


def _shape_color(rng: np.random.Generator) -> Tuple[float, float, float]:
    return _hsv_color(rng, sat=(170, 256), val=(150, 256))


# ---------------------------------------------------------------- background

@lru_cache(maxsize=8)
def _coords(size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Pixel coordinate grids (read-only, shared between images of one size)."""
    ys, xs = np.mgrid[:size, :size].astype(np.float32)
    ys.flags.writeable = False
    xs.flags.writeable = False
    return xs, ys


def _rotated_axis(rng: np.random.Generator, size: int) -> np.ndarray:
    """Coordinate along a random direction, so patterns are not axis-aligned."""
    xs, ys = _coords(size)
    angle = rng.uniform(0, np.pi)
    return xs * np.float32(np.cos(angle)) + ys * np.float32(np.sin(angle))


def _smooth_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    cells = int(rng.integers(2, 12))
    grid = rng.random((cells, cells), dtype=np.float32)
    field = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)
    low, high = field.min(), field.max()
    return (field - low) / max(high - low, 1e-6)


def _stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    period = rng.uniform(6, size / 2)
    phase = rng.uniform(0, 2 * np.pi)
    axis = _rotated_axis(rng, size)
    return 0.5 + 0.5 * np.sin(axis * np.float32(2 * np.pi / period) + np.float32(phase))


def _gradient(rng: np.random.Generator, size: int) -> np.ndarray:
    axis = _rotated_axis(rng, size)
    low, high = axis.min(), axis.max()
    return (axis - low) / max(high - low, 1e-6)


def _checker(rng: np.random.Generator, size: int) -> np.ndarray:
    cell = np.float32(rng.uniform(6, size / 4))
    u = np.floor(_rotated_axis(rng, size) / cell)
    v = np.floor(_rotated_axis(rng, size) / cell)
    return ((u + v) % 2).astype(np.float32)


_PATTERNS = (_smooth_noise, _stripes, _gradient, _checker)


def _pattern_layer(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random pattern mapped between two muted colours (HxWx3 float32)."""
    field = _PATTERNS[int(rng.integers(len(_PATTERNS)))](rng, size)[..., None]
    color_a = np.array(_background_color(rng), dtype=np.float32)
    color_b = np.array(_background_color(rng), dtype=np.float32)
    return color_a + field * (color_b - color_a)


def _render_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Blend 1 to 3 pattern layers, so that backgrounds vary but carry no objects."""
    image = _pattern_layer(rng, size)
    for _ in range(int(rng.integers(0, 3))):
        alpha = np.float32(rng.uniform(0.2, 0.5))
        image = (1 - alpha) * image + alpha * _pattern_layer(rng, size)
    return image


# -------------------------------------------------------------------- shapes

def _regular_polygon(center: np.ndarray, radius: float, angle: float, corners: int,
                     inner_ratio: float = 1.0) -> np.ndarray:
    """Vertices of a rotated regular polygon, or a star when ``inner_ratio < 1``."""
    steps = corners * (1 if inner_ratio == 1.0 else 2)
    theta = angle + np.arange(steps) * (2 * np.pi / steps)
    radii = np.full(steps, radius)
    if inner_ratio != 1.0:
        radii[1::2] *= inner_ratio
    points = center + np.stack([np.cos(theta), np.sin(theta)], axis=1) * radii[:, None]
    return np.round(points).astype(np.int32)


def _shape_mask(class_index: int, center: np.ndarray, extent: float, angle: float,
                size: int) -> np.ndarray:
    """Rasterise one shape without anti-aliasing, clipped to the image."""
    mask = np.zeros((size, size), dtype=np.uint8)
    radius = extent / 2
    name = DEMO_CLASSES[class_index]
    if name == 'circle':
        cx, cy = (int(v) for v in np.round(center))
        cv2.circle(mask, (cx, cy), int(round(radius)), 1, thickness=-1, lineType=cv2.LINE_8)
        return mask.astype(bool)
    if name == 'square':
        points = _regular_polygon(center, radius, angle, 4)
    elif name == 'triangle':
        points = _regular_polygon(center, radius, angle, 3)
    else:
        points = _regular_polygon(center, radius, angle, 5, STAR_INNER_RATIO)
    cv2.fillPoly(mask, [points], 1, lineType=cv2.LINE_8)
    return mask.astype(bool)


def _sample_shape(rng: np.random.Generator, size: int) -> _Shape:
    """Draw shapes until one shows at least ``MIN_VISIBLE_AREA`` pixels in the image.

    The extent is log-uniform, so tiny shapes are as common as large ones, and the
    centre may lie up to a quarter of the extent outside the image.
    """
    max_extent = MAX_EXTENT_RATIO * size
    while True:
        class_index = int(rng.integers(len(DEMO_CLASSES)))
        extent = float(np.exp(rng.uniform(np.log(MIN_EXTENT), np.log(max_extent))))
        margin = extent / 4
        center = rng.uniform(-margin, size - 1 + margin, size=2)
        angle = float(rng.uniform(0, 2 * np.pi))
        color = _shape_color(rng)
        mask = _shape_mask(class_index, center, extent, angle, size)
        if np.count_nonzero(mask) >= MIN_VISIBLE_AREA:
            return _Shape(class_index, mask, color)


def _place_shapes(rng: np.random.Generator, size: int) -> Tuple[List[_Shape], np.ndarray]:
    """Stack shapes so that every kept one stays visible enough.

    Returns the kept shapes in drawing order and an ``owner`` map holding, per
    pixel, the index of the kept shape visible there (-1 for background). The
    first shape is always kept, so every scene has at least one instance.
    """
    wanted = int(rng.integers(1, MAX_SHAPES + 1))
    owner = np.full((size, size), -1, dtype=np.int16)
    shapes: List[_Shape] = []
    visible = np.zeros(0, dtype=np.int64)
    for _ in range(CANDIDATES_PER_SHAPE * wanted):
        if len(shapes) == wanted:
            break
        shape = _sample_shape(rng, size)
        covered = owner[shape.mask]
        lost = np.bincount(covered[covered >= 0], minlength=len(shapes))
        if len(shapes) and (visible - lost).min() < MIN_VISIBLE_AREA:
            continue
        owner[shape.mask] = len(shapes)
        visible = np.append(visible - lost, np.count_nonzero(shape.mask))
        shapes.append(shape)
    return shapes, owner


def _add_camera_effects(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Mild blur and noise, so that edges and flat areas are not perfectly clean."""
    sigma = rng.uniform(0, 1.0)
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    noise_std = np.float32(rng.uniform(1, 6))
    image = image + noise_std * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def render_scene(rng: np.random.Generator,
                 size: int) -> Tuple[np.ndarray, np.ndarray, List[SceneInstance]]:
    """Draw one scene.

    Returns:
        ``(image, label, instances)``: a BGR uint8 image (HxWx3), a uint8 label
        map (0 background, class index + 1 elsewhere) and the kept instances in
        drawing order (later ones on top).
    """
    image = _render_background(rng, size)
    shapes, owner = _place_shapes(rng, size)
    for shape in shapes:
        image[shape.mask] = shape.color
    image = _add_camera_effects(rng, image)
    lut = np.array([0] + [shape.class_index + 1 for shape in shapes], dtype=np.uint8)
    label = lut[owner + 1]
    instances = [
        SceneInstance(shape.class_index, owner == i, int(np.count_nonzero(shape.mask)))
        for i, shape in enumerate(shapes)
    ]
    return image, label, instances


# ---------------------------------------------------------------------- COCO

def _pixel_edge_polygons(mask: np.ndarray) -> Tuple[List[List[float]], bool]:
    """Polygons around the pixels of ``mask``, and whether the mask has holes.

    ``cv2.findContours`` returns boundary pixel *centres*; as COCO polygons those
    shave half a pixel off every side (and whole thin tips), so decoded masks
    shrink. Tracing the mask at twice the resolution and mapping back puts each
    vertex a quarter pixel inside the mask's pixel edges: the polygon then holds
    every mask pixel centre and no other, and decodes to the same pixels.
    """
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    crop = mask[y0:int(ys.max()) + 1, x0:int(xs.max()) + 1].astype(np.uint8)
    doubled = np.pad(crop.repeat(2, axis=0).repeat(2, axis=1), 1)
    contours, hierarchy = cv2.findContours(doubled, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    has_hole = hierarchy is not None and bool((hierarchy[0][:, 3] >= 0).any())
    # -1 undoes the pad, +0.5 moves to the doubled pixel's centre, /2 halves back.
    offset = np.array([x0, y0], dtype=np.float64)
    polygons = [((c.reshape(-1, 2) - 1 + 0.5) / 2 + offset).reshape(-1).tolist()
                for c in contours if len(c) >= 3]
    return polygons, has_hole


def encode_segmentation(mask: np.ndarray) -> object:
    """COCO segmentation of a visible mask: polygons when they can be exact, else RLE."""
    polygons, has_hole = _pixel_edge_polygons(mask)
    if polygons and not has_hole:
        return polygons
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': [int(s) for s in rle['size']], 'counts': rle['counts'].decode('ascii')}


def _annotation(instance: SceneInstance, ann_id: int, image_id: int) -> dict:
    ys, xs = np.nonzero(instance.mask)
    x0, y0 = int(xs.min()), int(ys.min())
    width, height = int(xs.max()) - x0 + 1, int(ys.max()) - y0 + 1
    return {
        'id': ann_id,
        'image_id': image_id,
        'category_id': instance.class_index + 1,
        'bbox': [float(x0), float(y0), float(width), float(height)],
        'area': float(len(xs)),
        'iscrowd': 0,
        'segmentation': encode_segmentation(instance.mask),
    }


def _coco_skeleton(split: str) -> dict:
    return {
        'info': {'description': f'mmplug_agg synthetic shapes, {split} split',
                 'version': str(FORMAT_VERSION)},
        'images': [],
        'annotations': [],
        'categories': [{'id': i + 1, 'name': name, 'supercategory': 'shape'}
                       for i, name in enumerate(DEMO_CLASSES)],
    }


# ---------------------------------------------------------------- generation

def _params(num_train: int, num_val: int, size: int, seed: int) -> Dict[str, int]:
    """Validated parameters as plain ints (they are compared with, and stored in, JSON)."""
    params = {'num_train': num_train, 'num_val': num_val, 'size': size, 'seed': seed}
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f'{key} must be an integer, got {value!r}')
    params = {key: int(value) for key, value in params.items()}
    if params['num_train'] < 1 or params['num_val'] < 1:
        raise ValueError('num_train and num_val must both be at least 1, got '
                         f"{params['num_train']} and {params['num_val']}")
    if params['size'] < MIN_IMAGE_SIZE:
        raise ValueError(f"size must be at least {MIN_IMAGE_SIZE}, got {params['size']}")
    if params['seed'] < 0:
        raise ValueError(f"seed must be non-negative, got {params['seed']}")
    return params


def _imwrite(path: str, array: np.ndarray) -> None:
    if not cv2.imwrite(path, array):
        raise OSError(f'could not write {path}')


def _write_json(path: str, obj: dict) -> None:
    with open(path, 'w') as f:
        f.write(json.dumps(obj))  # dumps uses the C encoder, dump does not


def _generate_split(root: str, split: str, count: int, size: int, seed: int) -> None:
    """Write one split's images, label maps and COCO file under ``root``."""
    image_dir = osp.join(root, 'images', split)
    seg_dir = osp.join(root, 'seg', split)
    os.makedirs(image_dir)
    os.makedirs(seg_dir)
    coco = _coco_skeleton(split)
    for index in range(count):
        image, label, instances = render_scene(image_rng(seed, split, index), size)
        file_name = f'{index:06d}.png'
        _imwrite(osp.join(image_dir, file_name), image)
        _imwrite(osp.join(seg_dir, file_name), label)
        image_id = index + 1
        coco['images'].append(
            {'id': image_id, 'file_name': file_name, 'width': size, 'height': size})
        for instance in instances:
            ann_id = len(coco['annotations']) + 1
            coco['annotations'].append(_annotation(instance, ann_id, image_id))
    _write_json(osp.join(root, 'annotations', f'instances_{split}.json'), coco)


def _meta(params: Dict[str, int]) -> dict:
    return {
        'format_version': FORMAT_VERSION,
        'generator': __name__,
        'params': params,
        'classes': list(DEMO_CLASSES),
        'seg_classes': list(DEMO_SEG_CLASSES),
    }


def _remove(path: str) -> None:
    if osp.isdir(path) and not osp.islink(path):
        shutil.rmtree(path)
    elif osp.lexists(path):
        os.remove(path)


def _generate(out: str, params: Dict[str, int]) -> None:
    """Build the dataset in ``<out>.partial`` and move it to ``out`` once complete."""
    partial = out + '.partial'
    _remove(partial)
    os.makedirs(osp.join(partial, 'annotations'))
    counts = {'train': params['num_train'], 'val': params['num_val']}
    for split in SPLITS:
        _generate_split(partial, split, counts[split], params['size'], params['seed'])
    _write_json(osp.join(partial, 'meta.json'), _meta(params))
    stale = out + '.stale'
    _remove(stale)
    if osp.lexists(out):
        os.rename(out, stale)
    os.rename(partial, out)
    _remove(stale)


# ------------------------------------------------------------------- checks

def _fix_command(root: str, params: Optional[Dict[str, int]] = None) -> str:
    """The CLI line that rebuilds ``root``; non-default parameters are spelled out."""
    defaults = _params(DEFAULT_NUM_TRAIN, DEFAULT_NUM_VAL, DEFAULT_SIZE, DEFAULT_SEED)
    options = ''.join(f" --{key.replace('_', '-')} {value}"
                      for key, value in (params or {}).items() if value != defaults[key])
    return f'{CLI} --out {root}{options} --force'


def _read_meta(root: str) -> dict:
    with open(osp.join(root, 'meta.json')) as f:
        return json.load(f)


def _check(root: str, params: Optional[Dict[str, int]]) -> None:
    """Check ``root`` (and its parameters, when given); name the fix in the error."""
    fix = f'regenerate it with: {_fix_command(root, params)}'
    if not osp.lexists(root):
        raise FileNotFoundError(f'demo data folder {root} does not exist; {fix}')
    if not osp.isdir(root):
        raise RuntimeError(f'demo data path {root} is not a folder; {fix}')
    if not osp.isfile(osp.join(root, 'meta.json')):
        raise RuntimeError(f'demo data folder {root} has no meta.json, so it is half-written '
                           f'or not demo data; {fix}')
    meta = _read_meta(root)
    if meta.get('format_version') != FORMAT_VERSION:
        raise RuntimeError(f"demo data in {root} has format version {meta.get('format_version')}"
                           f', this mmplug_agg writes {FORMAT_VERSION}; {fix}')
    for split in SPLITS:
        for rel in (f'annotations/instances_{split}.json', f'images/{split}', f'seg/{split}'):
            if not osp.exists(osp.join(root, rel)):
                raise RuntimeError(f'demo data in {root} lacks {rel}; {fix}')
    if params is not None and meta.get('params') != params:
        raise RuntimeError(f"demo data in {root} was made with {meta.get('params')}, not the "
                           f'requested {params}; {fix}')


def check_demo_data(root: str) -> None:
    """Raise one clear error when ``root`` is not a complete demo dataset.

    Configs and tests call this before building datasets, so that a missing or
    half-written folder reports how to fix it instead of failing deep inside a
    dataset class.

    Raises:
        FileNotFoundError: ``root`` does not exist.
        RuntimeError: ``root`` lacks ``meta.json`` (interrupted or foreign), was
            written by another format version, or lacks an expected file.
    """
    _check(osp.normpath(os.fspath(root)), None)


def ensure_demo_data(out: str = DEFAULT_OUT, num_train: int = DEFAULT_NUM_TRAIN,
                     num_val: int = DEFAULT_NUM_VAL, size: int = DEFAULT_SIZE,
                     seed: int = DEFAULT_SEED, force: bool = False) -> str:
    """Make sure ``out`` holds the demo dataset of these parameters; return its path.

    A complete dataset with the same parameters is reused untouched, so calling
    this at the start of every run is cheap. An existing folder that is
    incomplete, foreign or made with other parameters is never overwritten
    silently: that raises ``RuntimeError`` unless ``force=True`` replaces it.
    """
    out = osp.normpath(os.fspath(out))
    params = _params(num_train, num_val, size, seed)
    if osp.lexists(out) and not force:
        _check(out, params)
        return out
    _generate(out, params)
    return out
