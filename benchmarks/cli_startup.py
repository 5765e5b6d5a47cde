"""Start-up time of the ``lightning-gen`` command: ``--help``, ``zoo list`` and an argument error.

Each command runs as a fresh ``python -m lightning_gen.cli`` process, interleaved with ``python -c pass`` (the
interpreter's own start-up) and, for reference, ``python -c "import torch, lightning"`` (what every command paid
before the imports became lazy), so that load on the machine affects all of them alike. Reports the median wall
time of each and its ratio to ``python -c pass``.

    python benchmarks/cli_startup.py              # the recorded settings
    python benchmarks/cli_startup.py --runs 3     # a quick look
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# ----------------------------------------------------------------------- settings
RUNS = 9  # rounds; each round runs every command once, in the same order
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "lightning-gen --help": ["-m", "lightning_gen.cli", "--help"],
    "lightning-gen zoo list": ["-m", "lightning_gen.cli", "zoo", "list"],
    "lightning-gen sample (argument error)": ["-m", "lightning_gen.cli", "sample", "--n", "4"],
    "python -c 'import torch, lightning'": ["-c", "import torch, lightning"],
}
REPOSITORY = Path(__file__).resolve().parents[1]


def wall_time(args: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY)}
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for name, command in COMMANDS.items():  # one untimed round: page cache, .pyc files
        wall_time(command)
    for _ in range(args.runs):
        for name, command in COMMANDS.items():
            times[name].append(wall_time(command))
    baseline = statistics.median(times["python -c pass"])
    print(f"{'command':<40} {'median s':>9} {'x python -c pass':>17}   ({args.runs} runs, {os.cpu_count()} cores)")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<40} {median:>9.3f} {median / baseline:>17.1f}")


if __name__ == "__main__":
    main()
