"""The zoo works from a regular (non-editable) install: weights are package data, loaded offline from any directory."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import lightning_gen
import lightning_gen.zoo as zoo
from lightning_gen._images import save_grid

SOURCE = Path(lightning_gen.__file__).parents[1]


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    run = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{' '.join(args)} failed:\n{run.stdout}\n{run.stderr}"
    return run.stdout


def test_pip_install_then_the_zoo_loads_offline_from_another_directory(tmp_path):
    # A copy of what the sdist holds, so that building writes nothing into the working tree.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(SOURCE / name, source / name)
    shutil.copytree(SOURCE / "lightning_gen", source / "lightning_gen", ignore=shutil.ignore_patterns("__pycache__"))

    # A fresh environment whose dependencies (torch, lightning, huggingface_hub...) are this environment's, read
    # through a plain path in a .pth file, so nothing is downloaded. A plain path does not run this environment's
    # own .pth files, so its editable lightning-gen stays invisible there.
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    python = env_dir / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    fresh_site = Path(_run([str(python), "-c", purelib], tmp_path, dict(os.environ)).strip())
    (fresh_site / "_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LIGHTNING_GEN_ZOO_DIR")}
    env.update(HF_HUB_OFFLINE="1", PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--ignore-installed"]
    _run([*pip, str(source)], tmp_path, env)
    installed = fresh_site / "lightning_gen" / "zoo" / "models"
    assert sorted(p.name for p in (installed / "dcgan-shapes32").iterdir()) == [
        "README.md", "config.json", "model.safetensors", "recipe.yaml", "samples.png"
    ]

    # One interpreter (each start imports torch and Lightning): the zoo API, then the command line's entry point.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    check = (
        "import sys, lightning_gen, lightning_gen.zoo as zoo; print(lightning_gen.__file__); "
        "print(type(zoo.load('vae-shapes32')).__name__); "
        "from lightning_gen.cli import main; "
        "sys.exit(main(['sample', '--model', 'dcgan-shapes32', '--n', '4', '--out', 'grid.png', '--seed', '0']))"
    )
    out = _run([str(python), "-c", check], elsewhere, env).splitlines()
    assert out[0].startswith(str(fresh_site)) and out[1] == "VAE"  # the installed copy, not this checkout
    save_grid(zoo.load("dcgan-shapes32").sample(4, seed=0), tmp_path / "here.png")
    assert (elsewhere / "grid.png").read_bytes() == (tmp_path / "here.png").read_bytes()  # the same weights
    # The console script runs the installed package (its usage lists the commands without importing torch).
    assert "sample" in _run([str(env_dir / "bin" / "lightning-gen"), "--help"], elsewhere, env)
    assert (env_dir / "bin" / "lightning-gen").read_text().startswith(f"#!{python}")
