"""lightning_gen._compat: every private torch / Lightning / torchmetrics / Optuna attribute, on the installed versions."""

from __future__ import annotations

import ast
import re
from importlib.metadata import version
from pathlib import Path

import lightning.pytorch as pl
import optuna
import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy

import lightning_gen
from lightning_gen import _compat

PACKAGE = Path(lightning_gen.__file__).parent


def test_grad_scale_reads_the_scalers_tensor_and_drops_with_an_overflow():
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    assert _compat.grad_scale(scaler) is None  # created on first use
    weight = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    scaler.scale(weight.sum() * float("inf")).backward()
    before = _compat.grad_scale(scaler).clone()
    scaler.step(optimizer)
    scaler.update()
    assert isinstance(before, torch.Tensor) and float(_compat.grad_scale(scaler)) == float(before) / 2
    assert torch.equal(weight.detach(), torch.ones(2))  # the step was skipped
    assert _compat.grad_scale(torch.amp.GradScaler("cpu", enabled=False)) is None


def test_unscale_and_foreach_kernels_match_their_definitions():
    grads = [torch.full((3,), 4.0), torch.tensor([2.0, float("nan")])]
    found_inf = torch.zeros(1)
    _compat.non_finite_check_and_unscale_(grads, found_inf, torch.full((1,), 0.5))
    assert float(found_inf) == 1.0 and torch.equal(grads[0], torch.full((3,), 2.0))
    averages, values = [torch.zeros(4), torch.ones(2)], [torch.ones(4), torch.full((2,), 3.0)]
    _compat.foreach_lerp_(averages, values, 0.25)
    # lerp computes a + w (v - a): exact in binary floating point for these values.
    assert torch.equal(averages[0], torch.full((4,), 0.25)) and torch.equal(averages[1], torch.full((2,), 1.5))
    _compat.foreach_copy_(averages, values)
    assert all(torch.equal(a, v) for a, v in zip(averages, values))
    assert "cuda" in _compat.fused_adam_devices()


def test_lightning_internals_answer_on_a_real_trainer():
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False)
    assert _compat.should_update_logs(trainer) in (True, False)
    assert _compat.should_update_logs(None) is True
    assert _compat.logged_results(None) is None
    strategy = DDPStrategy(static_graph=True, ddp_comm_hook=None)
    assert _compat.ddp_kwargs(strategy) == {"static_graph": True}
    assert _compat.ddp_comm_hook_settings(strategy) == (None, None, None)
    assert callable(getattr(strategy, "_setup_model"))  # what setup_ddp_model calls
    assert _compat.throttle_sigterm_check(trainer, 50) is True  # Lightning 2.6 has the per-batch SIGTERM check


def test_optuna_storage_and_trial_ids():
    study = optuna.create_study()
    trial = study.ask()
    assert _compat.study_storage(study).get_trial(_compat.trial_id(trial)).number == trial.number
    study.tell(trial, 1.0)
    assert _compat.trial_id(study.trials[0]) == _compat.trial_id(trial)


def test_a_missing_internal_fails_naming_the_installed_and_tested_versions():
    class Scaler:  # a GradScaler of a torch without _scale
        def is_enabled(self):
            return True

    with pytest.raises(_compat.UnsupportedVersionError) as raised:
        _compat.grad_scale(Scaler())
    message = str(raised.value)
    assert f"torch {version('torch')}" in message and _compat.TESTED_VERSIONS["torch"] in message
    assert "Scaler._scale" in message and "pip install 'torch" in message
    with pytest.raises(_compat.UnsupportedVersionError, match=r"optuna .* tested with optuna>=4"):
        _compat.trial_id(object())


def test_the_tested_versions_are_those_pyproject_admits():
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    floors = dict(re.findall(r'^([a-z-]+)==([\d.]+)', (PACKAGE.parent / ".ci" / "floors.txt").read_text(), re.M))
    for package, tested in _compat.TESTED_VERSIONS.items():
        floor = tested.split(",")[0].removeprefix(">=")
        assert floors[package].startswith(floor), package  # CI installs the floor the message names
        assert re.search(rf'"{package}(\[\w+\])?>={re.escape(floors[package])}', pyproject), package


# Private names of torch, Lightning, torchmetrics and Optuna that the library uses; outside _compat.py they are
# only allowed where a call site is still to be switched (files being edited elsewhere; see the CHANGELOG note).
PRIVATE_NAMES = re.compile(
    r"\._(results|logger_connector|scale|ddp_kwargs|ddp_comm_\w+|setup_model|broadcast_sigterm_tensor|storage|trial_id)\b"
    r"|torch\._(foreach_\w+|amp_foreach_\w+)|_get_fused_kernels_supported_devices"
)
NOT_YET_SWITCHED: set[str] = set()


def test_private_dependency_attributes_are_used_only_through_compat():
    offenders = set()
    for path in PACKAGE.rglob("*.py"):
        if path.name == "_compat.py" or path.relative_to(PACKAGE).as_posix() in NOT_YET_SWITCHED:
            continue
        # Code only: docstrings and comments may name the internals.
        code = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, (ast.Attribute, ast.ImportFrom))]
        for node in code:
            text = ast.unparse(node)
            if PRIVATE_NAMES.search(text) and "self._" not in text.split(".")[0:1]:
                offenders.add(f"{path.relative_to(PACKAGE)}: {text}")
    assert not offenders
