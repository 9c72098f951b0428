"""Full-size parity of converted effdet EfficientDets: effdet's model vs our config.

For each effdet model: random weights, BN statistics (measured on the images, then
perturbed), TensorFlow redundant biases and fusion weights; converted by
``mmplug_agg.utils.effdet_conversion``, loaded with ``strict=True`` into our config (90
classes, as effdet), and compared in eval mode on 2 noise images at the model's own input
size, once in float64 and once in float32: raw head outputs of all levels, and the final
detections of effdet's ``DetBenchPredict`` post-processing (its defaults: top 5000, hard
NMS 0.5, 100 per image) against our head with the ``efficientdet_d0_bifpn_coco_hardnms``
test_cfg. tests/tools/test_effdet_converter.py runs D0 at 256 px; this runs the sizes the
TensorFlow SAME padding was trained at.

Pass criteria (see docs/bifpn.md, "Parity with effdet's EfficientDet"):
  * float64: raw outputs within 1e-9 (the two models compute the same function; measured
    about 1e-13), detections identical: every one matched (same label, box within 1e-2 px,
    score within 1e-4) and in the same order;
  * float32: raw outputs within 1e-4, or, where float32 itself is coarser than that, within
    twice effdet's own float32 error (its float32 vs its float64 outputs); every detection
    matched or tie-explained and no two swapped places unless their scores are closer than
    1e-4 (``mmplug_agg.testing.effdet_parity.match_detections``).

Example (the numbers in docs/model_zoo.md and docs/bifpn.md):
    python benchmarks/check_effdet_conversion.py --threads 2      # D0 at 512, D3 at 896
    python benchmarks/check_effdet_conversion.py --models tf_efficientdet_d1 --stages
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
    parser.add_argument('--stages', action='store_true',
                        help='also print max abs / relative diffs stage by stage (backbone, '
                        'extra levels, every BiFPN cell, heads) in both precisions')
    return parser.parse_args()


def verdict(r: dict) -> bool:
    float32_raw_bound = {key: max(1e-4, 2 * r[f'effdet_float32_{key}_err'])
                         for key in ('cls', 'box')}
    return (r['float64_cls_max_abs'] < 1e-9 and r['float64_box_max_abs'] < 1e-9
            and r['float64_det_unmatched'] == 0 and r['float64_det_same_order'] == 1.0
            and r['float64_det_score_max_abs'] < 1e-4 and r['float64_det_box_max_abs'] < 1e-2
            and r['cls_max_abs'] <= float32_raw_bound['cls']
            and r['box_max_abs'] <= float32_raw_bound['box']
            and r['det_unexplained'] == 0 and r['det_inversions_beyond_tol'] == 0
            and r['det_score_max_abs'] < 1e-4 and r['det_box_max_abs'] < 1e-2)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    failed = []
    for name in args.models:
        size = IMAGE_SIZES[name]
        start = time.perf_counter()
        r = check_effdet_parity(name, f'{EFFDET_CONFIGS[name]}.py', size,
                                dtypes=(torch.float32, torch.float64), stages=args.stages)
        seconds = time.perf_counter() - start
        if args.stages:
            for precision in ('float64', 'float32'):
                print(f'{name} at {size} px, {precision}, stage by stage:')
                print('\n'.join(f'  {line}' for line in r[f'stages_{precision}']))
        ok = verdict(r)
        if not ok:
            failed.append(name)
        rows.append(
            f"| {name} | {EFFDET_CONFIGS[name]} | {size} "
            f"| {r['float64_cls_max_abs']:.1e} / {r['float64_box_max_abs']:.1e} "
            f"| {int(r['float64_det_matched'])}/{int(r['float64_num_dets'])}, "
            f"{'same order' if r['float64_det_same_order'] == 1.0 else 'ORDER DIFFERS'} "
            f"| {r['cls_max_abs']:.1e} / {r['box_max_abs']:.1e} "
            f"| {r['effdet_float32_cls_err']:.1e} / {r['effdet_float32_box_err']:.1e} "
            f"| {int(r['det_matched'])}/{int(r['num_dets'])}, "
            f"{int(r['det_unexplained'])} unexplained, {int(r['det_inversions'])} swaps "
            f"({int(r['det_inversions_beyond_tol'])} beyond tol) "
            f"| {r['det_box_max_abs']:.1e} / {r['det_score_max_abs']:.1e} "
            f"| {'pass' if ok else 'FAIL'} | {seconds:.0f} |")
        print(r, flush=True)
    print('| effdet model | our config | input | float64 raw cls / box max abs diff '
          '| float64 detections matched | float32 raw cls / box max abs diff '
          '| effdet float32 vs float64 (cls / box) | float32 detections '
          '| float32 box (px) / score max abs diff | verdict | s |')
    print('| --- | --- | ---: | ---: | --- | ---: | ---: | --- | ---: | --- | ---: |')
    print('\n'.join(rows))
    if failed:
        raise SystemExit(f'parity failed for {", ".join(failed)}')


if __name__ == '__main__':
    main()
