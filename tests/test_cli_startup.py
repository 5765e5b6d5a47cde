"""The command line answers without the training stack: which modules ``--help``, ``zoo list`` and usage errors load.

Asserted by module sets in a fresh interpreter, not by timing (the time is in benchmarks/cli_startup.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lightning_gen

SOURCE = Path(lightning_gen.__file__).parents[1]
HEAVY = ("torch", "lightning", "torchvision", "torchmetrics", "optuna", "huggingface_hub")

# Runs `lightning-gen ARGS` in-process (SystemExit included), then prints which heavy modules got loaded.
PROBE = """
import contextlib, io, json, sys
from lightning_gen.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(json.loads(sys.argv[1]))
    except SystemExit as exit:
        code = exit.code
print(json.dumps({"code": code, "loaded": sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)}))
"""


def _run(code: str, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SOURCE), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--help"], 0),
        ([], 2),
        (["zoo", "list"], 0),
        (["no-such-command"], 2),  # argument errors
        (["zoo", "no-such-command"], 2),
        (["zoo", "show"], 2),
        (["sample", "--n", "4"], 2),
        (["fid", "--bogus"], 2),
        (["sweep", "--bogus"], 2),
    ],
)
def test_the_command_line_answers_without_importing_torch(argv, code):
    result = json.loads(_run(PROBE, json.dumps(argv), json.dumps(HEAVY)))
    assert result == {"code": code, "loaded": []}


def test_zoo_show_reads_the_card_without_torch():
    result = json.loads(_run(PROBE, json.dumps(["zoo", "show", "dcgan-shapes32"]), json.dumps(HEAVY[:4])))
    assert result == {"code": 0, "loaded": []}


def test_importing_the_package_and_the_sweep_loads_no_training_stack():
    probe = (
        "import sys, lightning_gen, lightning_gen.cli, lightning_gen.sweep, lightning_gen.zoo; print(sorted(sys.modules)); "
        "lightning_gen.sweep.open_sweep; print(sorted(sys.modules))"
    )
    imported, opened = (set(line.split("'")) for line in _run(probe).splitlines())
    training_stack = {"torch", "lightning", "torchvision", "torchmetrics", "lightning_gen.gan", "lightning_gen._base"}
    assert not imported & (training_stack | {"optuna"})
    assert "optuna" in opened and not opened & training_stack  # a study needs Optuna, not the training stack


def test_public_names_are_imported_on_first_use():
    probe = (
        "import sys, lightning_gen; before = 'torch' in sys.modules; from lightning_gen import GANModule, VAE; "
        "import lightning_gen.gan; print(before, GANModule is lightning_gen.gan.GANModule, VAE.__name__, "
        "set(lightning_gen.__all__) <= set(dir(lightning_gen)), lightning_gen.__version__)"
    )
    from lightning_gen._version import __version__

    assert _run(probe).split() == ["False", "True", "VAE", "True", __version__]
    with pytest.raises(AttributeError, match="no attribute 'NoSuchName'"):
        lightning_gen.NoSuchName  # noqa: B018
