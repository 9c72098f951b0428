"""Side-by-side timing of a module and its reference, shared by every benchmark.

Each ``benchmarks/bench_<method>.py`` builds ours and the reference on the same
input and calls :func:`compare`, which prints one table row per candidate and the
speed ratio (reference time / our time: above 1.0 means we are faster).
Run them as scripts: ``python benchmarks/bench_<method>.py [--device cuda]``.
"""
import argparse
import resource
import statistics
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import nn


def parse_args(description: str, extra: Optional[Callable] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--iters', type=int, default=10, help='timed iterations')
    parser.add_argument('--warmup', type=int, default=3, help='untimed iterations first')
    parser.add_argument('--channels-last', action='store_true',
                        help='run modules and inputs in channels_last memory format')
    parser.add_argument('--rounds', type=int, default=1,
                        help='time all candidates this many times, in rotated order')
    parser.add_argument('--threads', type=int, default=0,
                        help='torch CPU threads (0: leave the default)')
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    return args


def _sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def _peak_memory_mib(device: str) -> float:
    if device.startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def time_step(step: Callable[[], None], device: str, iters: int, warmup: int) -> Dict:
    """Median and mean milliseconds of ``step`` and the peak memory while it ran."""
    for _ in range(warmup):
        step()
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    times: List[float] = []
    for _ in range(iters):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return dict(median_ms=statistics.median(times), mean_ms=statistics.fmean(times),
                peak_mib=_peak_memory_mib(device))


def forward_backward(module: torch.nn.Module, inputs: Sequence[torch.Tensor]) -> Callable:
    """A step that runs forward and backward through every output."""

    def step():
        module.zero_grad(set_to_none=True)
        outputs = module(*inputs)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        sum(out.float().mean() for out in outputs).backward()

    return step


# benchmarks/run_all.py sets this to a list to collect every comparison of a run;
# None when a benchmark runs on its own.
RECORDS: Optional[List[Dict]] = None


def record(title: str, reference: str, results: Dict[str, Dict]) -> None:
    """Keep one comparison (``results[name]`` has ``median_ms`` and ``speedup_vs_reference``)."""
    if RECORDS is not None:
        RECORDS.append(dict(title=title, reference=reference, results={
            name: {key: res[key] for key in ('median_ms', 'speedup_vs_reference', 'peak_mib')
                   if key in res} for name, res in results.items()}))


def compare(title: str, steps: Dict[str, Callable], reference: str, device: str,
            iters: int, warmup: int, keep: bool = True) -> Dict[str, Dict]:
    """Time every step, print a table and each candidate's ratio against ``reference``.

    Peak memory on CUDA is per candidate; on the CPU it is the process's peak RSS
    so far (it only grows), so read CPU memory columns as an upper bound.
    ``keep=False`` leaves the result out of :data:`RECORDS` (a round of several).
    """
    results = {name: time_step(step, device, iters, warmup) for name, step in steps.items()}
    ref_ms = results[reference]['median_ms']
    print(f'\n{title}  (device={device}, {iters} iters after {warmup} warm-up)')
    print(f"{'candidate':<34}{'median ms':>12}{'mean ms':>12}{'peak MiB':>12}{'speed-up':>10}")
    for name, res in results.items():
        ratio = ref_ms / res['median_ms']
        res['speedup_vs_reference'] = ratio
        print(f"{name:<34}{res['median_ms']:>12.2f}{res['mean_ms']:>12.2f}"
              f"{res['peak_mib']:>12.1f}{ratio:>9.2f}x")
    if keep:
        record(title, reference, results)
    return results


def compare_rounds(title: str, steps: Dict[str, Callable], reference: str,
                   args: argparse.Namespace) -> Dict[str, Dict]:
    """:func:`compare` ``args.rounds`` times in rotated order; with several rounds, print medians.

    On a shared CPU the time drifts with other processes' load; rotating the
    order and taking the median over rounds keeps that drift out of the ratios.
    Returns the medians over rounds (the one round's results when rounds == 1).
    """
    names = list(steps)
    rounds = []
    for index in range(args.rounds):
        order = names[index % len(names):] + names[:index % len(names)]
        label = f'{title}, round {index + 1}/{args.rounds}' if args.rounds > 1 else title
        rounds.append(compare(label, {n: steps[n] for n in order}, reference=reference,
                              device=args.device, iters=args.iters, warmup=args.warmup,
                              keep=args.rounds == 1))
    if args.rounds == 1:
        return rounds[0]
    medians = {
        name: dict(median_ms=statistics.median(r[name]['median_ms'] for r in rounds),
                   speedup_vs_reference=statistics.median(r[name]['speedup_vs_reference']
                                                          for r in rounds))
        for name in names
    }
    print(f'\n{title}: median over {args.rounds} rounds')
    print(f"{'candidate':<34}{'median ms':>12}{'speed-up':>10}")
    for name, res in medians.items():
        print(f"{name:<34}{res['median_ms']:>12.2f}{res['speedup_vs_reference']:>9.2f}x")
    record(f'{title} (median of {args.rounds} rounds)', reference, medians)
    return medians


def saved_for_backward_mib(module: nn.Module, feats: List[torch.Tensor]) -> float:
    """MiB of distinct tensor storage autograd keeps for backward after one forward."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        outputs = module(*feats)
    del outputs
    return sum(storages.values()) / 2**20


