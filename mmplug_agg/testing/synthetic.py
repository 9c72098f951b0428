"""Synthetic batches shaped like the ones mmdet's and mmseg's dataloaders yield.

FLOP counting, speed benchmarks and tests need inputs a model accepts without a
dataset on disk. Each batch below has the form ``model.data_preprocessor(batch,
training)`` takes: ``inputs`` is a list of uint8 CHW tensors and
``data_samples`` a list of data samples carrying the meta keys the packing
transforms (``PackDetInputs``, ``PackSegInputs``) set, plus random ground truth,
so one batch drives a forward in any mode ('tensor', 'predict' or 'loss').

Images are at network resolution already (``scale_factor`` is 1) because no
resize happens before the model; the data preprocessor pads them and records the
padded sizes exactly as it does for real data.

mmdet and mmseg are imported inside the functions that need them, so this module
imports when only one of the two toolboxes is installed.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

# (height, width) of images when no size is asked for: COCO-sized for detection
# (mmdet 2.x's get_flops default) and a Cityscapes training crop for segmentation.
DEFAULT_SHAPES: Dict[str, Tuple[int, int]] = {'mmdet': (1280, 800), 'mmseg': (512, 1024)}


def _image_and_meta(rng: np.random.RandomState, index: int,
                    shape: Tuple[int, int]) -> Tuple[torch.Tensor, dict]:
    """One random uint8 CHW image and the meta keys every packed sample has."""
    height, width = shape
    image = torch.from_numpy(rng.randint(0, 256, size=(3, height, width), dtype=np.uint8))
    meta = dict(img_path=f'synthetic_{index}.jpg',
                ori_shape=(height, width),
                img_shape=(height, width),
                pad_shape=(height, width),
                scale_factor=(1.0, 1.0),
                flip=False,
                flip_direction=None,
                # Where the image lies in the padded input (top, bottom, left, right), as
                # RandomCenterCropPad records it at test time; CenterNet's predict reads it.
                border=(0, height, 0, width))
    return image, meta


def _random_boxes(rng: np.random.RandomState, num_boxes: int, shape: Tuple[int, int]) -> np.ndarray:
    """Boxes (x1, y1, x2, y2) inside the image, each at least 1/8 of a side.

    A minimum size keeps every box matchable by some anchor or prior, so losses
    and assigners see positives as they do on real data.
    """
    height, width = shape
    sizes = rng.uniform(0.125, 0.6, size=(num_boxes, 2)) * (width, height)
    top_left = rng.uniform(0, 1, size=(num_boxes, 2)) * ((width, height) - sizes)
    return np.concatenate([top_left, top_left + sizes], axis=1).astype(np.float32)


def _box_masks(boxes: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """One filled-box mask per box, so masks and boxes describe the same objects."""
    masks = np.zeros((len(boxes), *shape), dtype=np.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.round().astype(int)):
        mask[y1:y2, x1:x2] = 1
    return masks


def make_det_batch(batch_size: int,
                   shape: Tuple[int, int],
                   num_classes: int,
                   with_mask: bool = False,
                   num_boxes: int = 3,
                   seed: int = 0) -> Dict[str, list]:
    """A detection batch: random images with random boxes, labels and masks.

    Args:
        batch_size: Number of images.
        shape: Image size as (height, width).
        num_classes: Labels are drawn from ``[0, num_classes)``.
        with_mask: Also give each instance a ``BitmapMasks`` mask (for
            instance-segmentation heads).
        num_boxes: Ground-truth instances per image.
        seed: Seed of the generator, so that a batch can be rebuilt exactly.

    Returns:
        ``dict(inputs=list[Tensor], data_samples=list[DetDataSample])`` with
        ``gt_instances`` (``HorizontalBoxes`` boxes, labels, optional masks) and
        an empty ``ignored_instances``, as ``PackDetInputs`` packs them.
    """
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    rng = np.random.RandomState(seed)
    height, width = shape
    inputs: List[torch.Tensor] = []
    data_samples = []
    for index in range(batch_size):
        image, meta = _image_and_meta(rng, index, shape)
        boxes = _random_boxes(rng, num_boxes, shape)
        gt_instances = InstanceData(bboxes=HorizontalBoxes(torch.from_numpy(boxes)),
                                    labels=torch.from_numpy(
                                        rng.randint(0, num_classes, size=num_boxes)).long())
        ignored_instances = InstanceData(bboxes=HorizontalBoxes(torch.zeros((0, 4))),
                                         labels=torch.zeros(0, dtype=torch.long))
        if with_mask:
            gt_instances.masks = BitmapMasks(_box_masks(boxes, shape), height, width)
            ignored_instances.masks = BitmapMasks(np.zeros((0, height, width), dtype=np.uint8),
                                                  height, width)
        data_sample = DetDataSample(metainfo=dict(meta, img_id=index))
        data_sample.gt_instances = gt_instances
        data_sample.ignored_instances = ignored_instances
        inputs.append(image)
        data_samples.append(data_sample)
    return dict(inputs=inputs, data_samples=data_samples)


def make_seg_batch(batch_size: int,
                   shape: Tuple[int, int],
                   num_classes: int,
                   seed: int = 0) -> Dict[str, list]:
    """A semantic-segmentation batch: random images with random label maps.

    Args:
        batch_size: Number of images.
        shape: Image size as (height, width).
        num_classes: Pixel labels are drawn from ``[0, num_classes)``.
        seed: Seed of the generator, so that a batch can be rebuilt exactly.

    Returns:
        ``dict(inputs=list[Tensor], data_samples=list[SegDataSample])`` whose
        ``gt_sem_seg`` is a ``PixelData`` holding a (1, H, W) int64 map, as
        ``PackSegInputs`` packs it.
    """
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    rng = np.random.RandomState(seed)
    inputs: List[torch.Tensor] = []
    data_samples = []
    for index in range(batch_size):
        image, meta = _image_and_meta(rng, index, shape)
        label_map = rng.randint(0, num_classes, size=(1, *shape)).astype(np.int64)
        data_sample = SegDataSample(
            metainfo=dict(meta, seg_map_path=f'synthetic_{index}.png', reduce_zero_label=False))
        data_sample.gt_sem_seg = PixelData(data=torch.from_numpy(label_map))
        inputs.append(image)
        data_samples.append(data_sample)
    return dict(inputs=inputs, data_samples=data_samples)


def _detector_num_classes(detector: nn.Module) -> int:
    """Classes of the head that consumes the labels.

    A two-stage detector's RPN head is class-agnostic (one class), so the
    labels must follow the RoI head; cascades hold one bbox head per stage, and
    box-free instance segmentors (SOLO) have only a mask head.
    """
    if hasattr(detector, 'roi_head'):
        head = detector.roi_head.bbox_head
    elif getattr(detector, 'bbox_head', None) is not None:
        head = detector.bbox_head
    else:
        head = detector.mask_head
    if isinstance(head, nn.ModuleList):
        head = head[0]
    return head.num_classes


def make_batch_for_model(model: nn.Module,
                         toolbox: str,
                         shape: Optional[Sequence[int]] = None,
                         batch_size: int = 1,
                         seed: int = 0) -> Dict[str, list]:
    """A batch with ground truth that fits ``model``'s classes and heads.

    Args:
        model: A built mmdet detector or mmseg segmentor.
        toolbox: ``'mmdet'`` or ``'mmseg'``, as the config's ``default_scope``.
        shape: Image size as (height, width), one side for a square image, or
            None for the toolbox's customary size (``DEFAULT_SHAPES``).
        batch_size: Number of images.
        seed: Seed of the generator.
    """
    if toolbox not in DEFAULT_SHAPES:
        raise ValueError(f"toolbox must be 'mmdet' or 'mmseg', got {toolbox!r}")
    if not shape:
        shape = DEFAULT_SHAPES[toolbox]
    elif len(shape) == 1:
        shape = (shape[0], shape[0])
    elif len(shape) != 2:
        raise ValueError(f'shape must be one side or (height, width), got {tuple(shape)}')
    size = (int(shape[0]), int(shape[1]))
    if toolbox == 'mmdet':
        return make_det_batch(batch_size,
                              size,
                              _detector_num_classes(model),
                              with_mask=model.with_mask,
                              seed=seed)
    return make_seg_batch(batch_size, size, model.num_classes, seed=seed)


def tiny_hrnet_extra(widths=(8, 16, 32, 64)) -> dict:
    """``extra`` of an mmseg/mmdet HRNet with one block per branch: fast in tests."""
    stages = {}
    for stage in range(1, 5):
        branches = 1 if stage == 1 else stage
        stages[f'stage{stage}'] = dict(
            num_modules=1,
            num_branches=branches,
            block='BOTTLENECK' if stage == 1 else 'BASIC',
            num_blocks=(1, ) * branches,
            num_channels=tuple(widths[:branches]))
    return stages
