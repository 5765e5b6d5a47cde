"""Precision/recall/density/coverage: the library's tiled computation vs torch-fidelity's ``prc`` side by side.

Each side runs in its own fresh process (so peak memory is its own) on the same random features; the script prints
seconds, peak resident memory and the values (precision/recall must agree). Settings are at the top.

    .venv/bin/python benchmarks/prdc_memory.py
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import time

N, D, K, SEED = 6000, 512, 3, 0  # real = generated count, feature size, neighbourhood, seed
TILE = 1024  # the library's tile side (default 4096; smaller here to show the bound at this N)


def _features():
    import torch

    generator = torch.Generator().manual_seed(SEED)
    real = torch.randn(N, D, generator=generator)
    fake = torch.randn(N, D, generator=generator) * 1.02 + 0.01  # overlapping sets: P/R far from 0 and 1
    return real, fake


def _run(which: str, queue) -> None:
    import torch

    torch.set_num_threads(2)
    real, fake = _features()
    import lightning_gen.metrics  # noqa: F401  (imports are not part of either side's memory)
    import torch_fidelity.metric_prc  # noqa: F401

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if which == "lightning-gen":
        from lightning_gen.metrics import prdc_from_features

        values = prdc_from_features(real, fake, k=K, tile_size=TILE)
    else:
        from torch_fidelity.metric_prc import prc_features_to_metric

        # save_cpu_ram=False is torch-fidelity's default: full N x M distance matrices.
        values = prc_features_to_metric(fake, real, prc_neighborhood=K, prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    seconds = time.perf_counter() - started
    peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    queue.put({"side": which, "seconds": round(seconds, 2), "extra_peak_mib": round(peak_mib, 1),
               "precision": values["precision"], "recall": values["recall"]})


def main() -> None:
    context = multiprocessing.get_context("spawn")
    results = []
    for which in ("torch-fidelity", "lightning-gen"):
        queue = context.Queue()
        process = context.Process(target=_run, args=(which, queue))
        process.start()
        results.append(queue.get())
        process.join()
    for result in results:
        print(json.dumps(result))
    reference, ours = results
    print(f"N=M={N}, d={D}: time ratio lightning-gen / torch-fidelity = {ours['seconds'] / reference['seconds']:.2f}, "
          f"extra peak memory {ours['extra_peak_mib']:.0f} MiB vs {reference['extra_peak_mib']:.0f} MiB; "
          f"precision/recall equal: {abs(ours['precision'] - reference['precision']) < 1e-4 and abs(ours['recall'] - reference['recall']) < 1e-4}")


if __name__ == "__main__":
    main()
