"""``lightning-gen zoo``: list, show, pull, push, export and import-dcgan.

Sub-commands::

    lightning-gen zoo list
    lightning-gen zoo show NAME
    lightning-gen zoo pull NAME_OR_REPO [--revision REV] [--force]
    lightning-gen zoo push DIR_OR_NAME --repo-id ORG/NAME [--private] [--branch B] [--create-pr] [--message MSG]
    lightning-gen zoo export CKPT DIR [--zoo-name NAME] [--recipe FILE] [--metrics FILE ...] [--dataset D] ...
                                      [--onnx] [--torchscript]
    lightning-gen zoo import-dcgan NETG.pth [--netd NETD.pth] --out DIR

``export --zoo-name`` and ``push NAME`` also update the registry (``lightning_gen/zoo/index.json``):
the sha256 of newly exported weights, the repository and commit of a push. Commit that file.
``export --onnx`` / ``--torchscript`` also write the sampling generator for deployment (``generator.onnx``,
``generator.torchscript.pt``; see :mod:`lightning_gen.export`), listed on the card and uploaded by ``push``.
``export --metrics`` reads the card metrics from JSON (see :func:`lightning_gen.model_card.metrics_from_json`):
FID / IS / KID entries, the optional shapes entries (``fsd``, ``validity``, ``<factor>_tv``, ``<factor>_coverage``)
that :func:`lightning_gen.model_card.shapes_metrics_json` writes, or ``evaluate_shapes(...).to_json()`` as it is.
User errors (unknown names, missing repositories, hash mismatches, an unreachable Hub...) print one
``error:`` line and exit with status 1; usage errors exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import lightning_gen.zoo as zoo
from lightning_gen.hub_format import CARD_NAME, CONFIG_NAME, RECIPE_NAME, WEIGHTS_NAME
from lightning_gen.model_card import RECIPE_CAUTION, CardInfo, MetricResult, metrics_from_json

# torch, Lightning and the Hub mixin are imported by the sub-commands that build models (show/list do not).



def _user_errors() -> tuple[type[BaseException], ...]:
    """What a user can cause: bad names and paths, refused files, Hub answers (HfHubHTTPError is an OSError).

    Built when an error is caught, so that ``zoo list`` does not import huggingface_hub's errors (and its HTTP client).
    """
    from huggingface_hub.errors import EntryNotFoundError

    return (ValueError, LookupError, OSError, EntryNotFoundError, pickle.UnpicklingError)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightning-gen zoo", description="Pretrained models and the Hub.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("list", help="list the registered zoo models")
    show = sub.add_parser("show", help="details of a zoo model (no network needed)")
    show.add_argument("name", help="zoo name (see `lightning-gen zoo list`)")

    pull = sub.add_parser("pull", help="download a zoo model or Hub repository into the Hugging Face cache")
    pull.add_argument("name", metavar="NAME_OR_REPO", help="zoo name, or a Hub repository id ORG/NAME")
    pull.add_argument("--revision", default=None, help="branch, tag or commit (Hub ids only; zoo models are pinned)")
    pull.add_argument("--force", action="store_true", help="download again even if cached")

    push = sub.add_parser("push", help="upload a model folder (or a zoo model's folder) to the Hub")
    push.add_argument("source", metavar="DIR_OR_NAME", help="folder written by save_pretrained/export, or a zoo name")
    push.add_argument("--repo-id", required=True, help="target repository ORG/NAME (created if missing)")
    push.add_argument("--private", action="store_true", default=None, help="create the repository as private")
    push.add_argument("--branch", default=None, help="branch to commit to (created if missing; default main)")
    push.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    push.add_argument("--message", default="Upload lightning-gen model", help="commit message")
    push.add_argument("--no-update-index", action="store_true", help="for a zoo name: do not record the commit")

    shapes_workflow = (
        "shapes models: put FSD, validity and factor coverage on the card by measuring first, then\n"
        "  python -c \"from lightning_gen.data import ShapesDataModule; from lightning_gen.metrics import "
        "evaluate_shapes; open('shapes.json', 'w').write(evaluate_shapes(ShapesDataModule().split_dataset('train'), "
        "'CKPT').to_json())\"\n"
        "  lightning-gen zoo export CKPT DIR --metrics metrics.json --metrics shapes.json"
    )
    export = sub.add_parser(
        "export", help="convert a Lightning checkpoint into a Hub folder", epilog=shapes_workflow,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the epilog's command lines whole
    )
    export.add_argument("checkpoint", metavar="CKPT", help="Lightning .ckpt written by GANModule or VAE")
    export.add_argument("directory", metavar="DIR", help="folder to write (created; other files are kept)")
    export.add_argument("--class", dest="class_name", choices=sorted(zoo.CLASS_MODULES), help="default: the recorded one")
    export.add_argument("--zoo-name", default=None, help="registered model this is: card defaults, records the sha256")
    export.add_argument("--recipe", default=None, help="LightningCLI YAML that trained it (copied as recipe.yaml)")
    metrics_help = (
        'JSON of card metrics: {"fid": {"value": 12.3, "protocol": {...}}, "is": {"reason": "..."}}, optionally with '
        "shapes entries (fsd, validity, <factor>_tv, <factor>_coverage: write them with "
        "lightning_gen.model_card.shapes_metrics_json(evaluate_shapes(...))), or the JSON of "
        "evaluate_shapes(...).to_json() as it is; repeat the option to combine files"
    )
    export.add_argument("--metrics", action="append", default=None, metavar="FILE", help=metrics_help)
    export.add_argument("--dataset", default=None, help="training data name for the card")
    export.add_argument("--license", default=None, help="Hub licence id of the weights (default: other)")
    export.add_argument("--description", default=None, help="a paragraph for the card")
    export.add_argument("--repo-id", default=None, help="Hub repository the folder will be pushed to (for the card)")
    export.add_argument("--class-names", default=None, help="comma-separated label names of a conditional model")
    export.add_argument("--include-discriminator", action="store_true", help="also store the discriminator")
    export.add_argument("--no-samples", action="store_true", help="do not draw samples.png")
    export.add_argument("--onnx", action="store_true", help="also write generator.onnx (dynamic batch axis)")
    export.add_argument("--torchscript", action="store_true", help="also write generator.torchscript.pt (traced)")

    dcgan = sub.add_parser("import-dcgan", help="convert netG/netD state dicts of the PyTorch DCGAN example")
    dcgan.add_argument("netg", metavar="NETG.pth", help="torch.save(netG.state_dict()) of the example")
    dcgan.add_argument("--netd", default=None, metavar="NETD.pth", help="the discriminator's state dict (optional)")
    dcgan.add_argument("--out", required=True, metavar="DIR", help="Hub folder to write")
    dcgan.add_argument("--dataset", default=None, help="training data name for the card")
    dcgan.add_argument("--license", default="other", help="Hub licence id of the weights")
    dcgan.add_argument("--no-samples", action="store_true", help="do not draw samples.png")
    return parser


def _weights_status(entry: zoo.ZooEntry) -> str:
    if entry.sha256 is None:
        return "not exported"
    where = (["local"] if zoo.local_dir(entry.name) else []) + (["hub"] if entry.published else [])
    return "+".join(where) or "missing"


def _cmd_list(args: argparse.Namespace) -> int:
    rows = [("NAME", "CLASS", "DATASET", "WEIGHTS", "DESCRIPTION")]
    rows += [(e.name, e.class_name, e.dataset, _weights_status(e), e.description) for e in map(zoo.info, zoo.list())]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths)) + "  " + row[4])
    return 0


def _cached_file(entry: zoo.ZooEntry, filename: str) -> Path | None:
    """A file of the entry from its local folder, else from the Hugging Face cache (no network)."""
    folder = zoo.local_dir(entry.name)
    if folder is not None and (folder / filename).is_file():
        return folder / filename
    if entry.published:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(entry.repo_id, filename, revision=entry.revision)
        if isinstance(cached, str):
            return Path(cached)
    return None


def _cmd_show(args: argparse.Namespace) -> int:
    from huggingface_hub import metadata_load

    entry = zoo.info(args.name)
    folder = zoo.local_dir(entry.name)
    lines = [
        ("name", entry.name),
        ("class", entry.class_name),
        ("description", entry.description),
        ("dataset", entry.dataset),
        ("license", entry.license),
        ("hub", f"{entry.repo_id}@{entry.revision}" if entry.published else "not published"),
        ("sha256", entry.sha256 or "not exported"),
        ("local folder", str(folder) if folder is not None else "none"),
    ]
    config_path = _cached_file(entry, CONFIG_NAME)
    if config_path is not None:
        config = json.loads(config_path.read_text())
        size = config.get("image_size")
        lines += [
            ("image size", f"{size}x{size}, {config.get('channels')} channel(s)"),
            ("latent size", str(config.get("latent_dim"))),
            ("classes", str(config.get("num_classes") or "unconditional")),
            ("EMA decay", str(config.get("ema_decay"))),
        ]
    card_path = _cached_file(entry, CARD_NAME)
    if card_path is not None:
        metrics = [
            f"{m.get('name', m.get('type'))} = {m.get('value')}"
            for model in (metadata_load(card_path) or {}).get("model-index", []) or []
            for result in model.get("results", [])
            for m in result.get("metrics", [])
        ]
        lines.append(("metrics", "; ".join(metrics) or "none measured (see the card)"))
    else:
        lines.append(("metrics", "card not available offline; `lightning-gen zoo pull` fetches it"))
    recipe = _cached_file(entry, RECIPE_NAME)
    lines.append(("recipe", f"{recipe if recipe else 'in the card'}. {RECIPE_CAUTION}"))
    width = max(len(key) for key, _ in lines)
    for key, value in lines:
        print(f"{key.ljust(width)}  {value}")
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    folder = zoo.pull(args.name, args.revision, force_download=args.force)
    print(f"pulled {args.name} into {folder}")
    if (folder / RECIPE_NAME).is_file():
        print(f"note: {RECIPE_CAUTION}")
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from lightning_gen._base import GenerativeModule
    from lightning_gen.hub import push_folder

    source, entry = Path(args.source), None
    if source.is_dir():
        GenerativeModule.from_pretrained(source)  # a folder that does not load strictly is never published
    else:
        entry = zoo.info(args.source)  # unknown names fail here with close matches
        folder = zoo.local_dir(entry.name)
        if folder is None:
            raise zoo.MissingFileError(f"Zoo model {entry.name!r} has no local folder to push; export it first.")
        zoo.load(entry.name, source="local")  # checks the pinned sha256 before publishing
        source = folder
    commit = push_folder(
        source, args.repo_id, commit_message=args.message, private=args.private, branch=args.branch,
        create_pr=args.create_pr or None,
    )
    pull_request = f" ({commit.pr_url})" if commit.pr_url else ""
    print(f"pushed {source} to {args.repo_id} at commit {commit.oid}{pull_request}")
    if entry is not None and not args.no_update_index and not args.create_pr:
        zoo.update_index_entry(entry.name, repo_id=args.repo_id, revision=commit.oid)
        print(f"recorded {args.repo_id}@{commit.oid} for {entry.name} in {zoo.INDEX_PATH}")
    return 0


def _read_metrics(paths: Sequence[str]) -> tuple[MetricResult, ...]:
    """The card metrics of the ``--metrics`` files; a metric given by two files is an error, not a silent choice."""
    results: dict[str, tuple[str, MetricResult]] = {}
    for path in paths:
        try:
            raw = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"--metrics {path!r} is not JSON: {err}") from None
        for result in metrics_from_json(raw, source=f"--metrics {path!r}"):
            if result.name in results:
                first = results[result.name][0]
                raise ValueError(f"--metrics: {result.name!r} is given by both {first!r} and {path!r}.")
            results[result.name] = (path, result)
    return tuple(result for _, result in results.values())


def _cmd_export(args: argparse.Namespace) -> int:
    from lightning_gen.sampling import load_checkpoint

    entry = zoo.info(args.zoo_name) if args.zoo_name else None
    directory = Path(args.directory)
    module = load_checkpoint(args.checkpoint, cls=zoo.model_class(args.class_name) if args.class_name else None)
    recipe = Path(args.recipe).read_text() if args.recipe else None
    directory.mkdir(parents=True, exist_ok=True)
    if args.recipe and Path(args.recipe).resolve() != (directory / RECIPE_NAME).resolve():
        shutil.copyfile(args.recipe, directory / RECIPE_NAME)  # so that a push publishes it too
    extra_files = _export_deployment_files(module, directory, onnx=args.onnx, torchscript=args.torchscript)
    card = CardInfo(
        model_name=entry.name if entry else None,
        description=args.description or (entry.description if entry else None),
        dataset=args.dataset or (entry.dataset if entry else None),
        license=args.license or (entry.license if entry else "other"),
        metrics=_read_metrics(args.metrics) if args.metrics else (),
        recipe=recipe,
        repo_id=args.repo_id or (entry.repo_id if entry else None),
        zoo_name=entry.name if entry else None,
        extra_files=extra_files,
    )
    module.save_pretrained(
        directory,
        model_card_kwargs=card.as_kwargs(),
        samples=not args.no_samples,
        include_discriminator=args.include_discriminator,
        class_names=[c.strip() for c in args.class_names.split(",")] if args.class_names else None,
    )
    digest = zoo.sha256_file(directory / WEIGHTS_NAME)
    print(f"exported {args.checkpoint} to {directory} ({WEIGHTS_NAME} sha256 {digest})")
    if entry is not None and digest != entry.sha256:
        # The published commit (if any) holds other weights now: drop its pin until the next push.
        zoo.update_index_entry(entry.name, sha256=digest, revision=None)
        print(f"recorded the new sha256 for {entry.name} in {zoo.INDEX_PATH}; push it to publish")
    return 0


def _export_deployment_files(module: GenerativeModule, directory: Path, *, onnx: bool, torchscript: bool) -> tuple:
    """Write the requested deployment files; return their (name, description) pairs for the card."""
    from lightning_gen import export

    inputs = "`z` (batch, latent_dim) float32" + (" and `labels` (batch,) int64" if module.num_classes else "")
    files = []
    if onnx:
        export.export_onnx(module, directory / export.ONNX_NAME)
        files.append((export.ONNX_NAME, f"the sampling generator as ONNX: {inputs} -> `images` in [-1, 1]."))
    if torchscript:
        export.export_torchscript(module, directory / export.TORCHSCRIPT_NAME)
        files.append((export.TORCHSCRIPT_NAME, f"the sampling generator as TorchScript (`torch.jit.load`): {inputs}."))
    for name, _ in files:
        print(f"wrote {directory / name}")
    return tuple(files)


def _cmd_import_dcgan(args: argparse.Namespace) -> int:
    from lightning_gen.zoo.dcgan_import import import_dcgan

    folder = import_dcgan(
        args.netg, args.out, args.netd, dataset=args.dataset, license=args.license, samples=not args.no_samples
    )
    print(f"imported {args.netg}{' and ' + args.netd if args.netd else ''} into {folder}")
    return 0


_COMMANDS = {
    "list": _cmd_list,
    "show": _cmd_show,
    "pull": _cmd_pull,
    "push": _cmd_push,
    "export": _cmd_export,
    "import-dcgan": _cmd_import_dcgan,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lightning-gen zoo``; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except Exception as err:
        if not isinstance(err, _user_errors()):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
