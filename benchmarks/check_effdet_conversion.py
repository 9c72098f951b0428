"""Full-size parity of converted effdet EfficientDets: effdet's model vs our config.

For each effdet model: random weights, BN statistics (measured on the images, then
perturbed), TensorFlow redundant biases and fusion weights; converted by
``mmplug_agg.utils.effdet_conversion``, loaded with ``strict=True`` into our config (90
classes, as effdet), and compared in eval mode on 2 noise images at the model's own input
size: raw head outputs of all levels, and the final detections of effdet's
``DetBenchPredict`` (its defaults: top 5000, hard NMS 0.5, 100 per image) against our head
with the ``efficientdet_d0_bifpn_coco_hardnms`` test_cfg. tests/tools/test_effdet_converter.py
runs D0 at 256 px; this runs the sizes the TensorFlow SAME padding was trained at.

Example (the numbers in docs/model_zoo.md and docs/bifpn.md):
    python benchmarks/check_effdet_conversion.py                  # D0 at 512, D3 at 896
    python benchmarks/check_effdet_conversion.py --models tf_efficientdet_d7 efficientdet_d1
"""
import argparse
import time

import torch

import mmplug_agg  # noqa: F401
from mmplug_agg.testing.effdet_parity import check_effdet_parity
from mmplug_agg.utils.effdet_conversion import EFFDET_CONFIGS

IMAGE_SIZES = {'tf_efficientdet_d0': 512, 'tf_efficientdet_d1': 640, 'tf_efficientdet_d2': 768,
               'tf_efficientdet_d3': 896, 'tf_efficientdet_d4': 1024,
               'tf_efficientdet_d5': 1280, 'tf_efficientdet_d6': 1280,
               'tf_efficientdet_d7': 1536, 'tf_efficientdet_d7x': 1536,
               'efficientdet_d0': 512, 'efficientdet_d1': 640}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', nargs='+', choices=sorted(EFFDET_CONFIGS),
                        default=['tf_efficientdet_d0', 'tf_efficientdet_d3'])
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print('| effdet model | our config | input | raw cls max abs diff | raw box max abs diff '
          '| detections | labels equal | box max abs diff (px) | score max abs diff | s |')
    print('| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |')
    failed = []
    for name in args.models:
        size = IMAGE_SIZES[name]
        start = time.perf_counter()
        r = check_effdet_parity(name, f'{EFFDET_CONFIGS[name]}.py', size)
        seconds = time.perf_counter() - start
        ok = (r['cls_max_abs'] < 1e-4 and r['box_max_abs'] < 1e-4
              and r.get('det_labels_equal') == 1.0 and r.get('det_score_max_abs', 1) < 1e-4
              and r.get('det_box_max_abs', 1) < 1e-2)
        if not ok:
            failed.append(name)
        print(f"| {name} | {EFFDET_CONFIGS[name]} | {size} | {r['cls_max_abs']:.2e} | "
              f"{r['box_max_abs']:.2e} | {int(r.get('num_dets', -1))} | "
              f"{'yes' if r.get('det_labels_equal') == 1.0 else 'NO'} | "
              f"{r.get('det_box_max_abs', float('nan')):.2e} | "
              f"{r.get('det_score_max_abs', float('nan')):.2e} | {seconds:.0f} |", flush=True)
    if failed:
        raise SystemExit(f'parity failed for {", ".join(failed)}')


if __name__ == '__main__':
    main()
