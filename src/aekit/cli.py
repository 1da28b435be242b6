"""The ``aekit`` command line: train, evaluate, encode, reconstruct, list-models, and the applications.

Errors a user can cause are printed as one line (``aekit: error: ...``) with
exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import signal
import threading
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .runfiles import CALIBRATION, COMMAND, CONFIG, DATA, LOCK, RESUME, TRAINER, WEIGHTS
from .checkpoint import atomic_write, build_from_config, load, lock_run, model_config, read_json
from .data import Dataset, Scaling, default_split, load_dataset
from .apps.documents import DocumentIndex, binary_codes, retrieval_precision
from .defaults import BATCH_SIZE, DOCUMENT_BATCH, DOCUMENT_STEPS, IMAGE_CALIBRATION, LR, MEMBERS, STEPS, TABULAR_CALIBRATION, RowPlan, batch_size_for, epochs_for, fill_documents, fill_images, fill_tabular, row_loss
from .runs import IN_MODEL, data_path, read_spec, run_data, warn_duplicate_ids, write_csv
from .errors import AekitError, CheckpointError, ConfigError, DataError
from .losses import squared_error
from .models.base import positive_int
from .apps.cli import add_commands as add_app_commands
from .apps.common import encode, reconstruct
from .apps.generate import log_likelihood
from .losses import RECONSTRUCTION_LOSSES
from .models.architectures import list_architectures
from .models.layers import ACTIVATIONS
from .registry import get_model, list_models, model_class
from .data.stream import open_stream
from .training import Trainer, evaluate_losses, seed_everything
from .training.allocator import tune_allocator
from .training.distributed import finish, rank_and_world
from .training.trainer import check_seed, ensure_new_run



# -- helpers ---------------------------------------------------------------------------------


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 1000,500,250, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _progress(args: argparse.Namespace) -> bool | str:
    """The Trainer's progress setting: a bar (lines when piped), lines only, or nothing."""
    return False if args.quiet else "lines" if args.no_progress else True


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value  # a bare string such as gaussian


def _free_run_dir(model: str, dataset: str) -> Path:
    """A new folder ``runs/MODEL-DATA[-K]``, made here: two commands started at once never get the same one."""
    stem = Path("runs") / f"{model}-{Path(dataset).stem.replace(':', '-')}"[:200]
    stem.parent.mkdir(exist_ok=True)
    path, n = stem, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1
            path = stem.with_name(f"{stem.name}-{n}")
        except OSError as exc:
            raise CheckpointError(f"cannot make a run folder under {stem.parent.resolve()} ({exc.strerror or exc}); name one with --out.") from None


def _run_data(run: Path, args: argparse.Namespace, split_default: str) -> Dataset:
    return run_data(run, getattr(args, "dataset", None), args.split, args.data_dir, split_default)


def _write_array(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    if path.suffix == ".npz":
        np.savez(buffer, **arrays)
    else:
        np.save(buffer, next(iter(arrays.values())))
    atomic_write(path, buffer.getvalue())


# -- commands ----------------------------------------------------------------------------------


UNIT_INTERVAL_LOSSES = ("bce", "bernoulli", "categorical")  # losses that need data in [0, 1], so min-max scaling


def _tabular_setup(args: argparse.Namespace, data: Dataset, options: dict[str, Any]) -> tuple[str, Dataset, str | dict | None, list[str]]:
    """For rows of features: the model (the detector ensemble unless --model), scaling inside the model where the
    loss allows it (else min-max scaling of the data, saved in data.json), sizes from the data. Returns the model
    name, the data, data.json's scaling and what was chosen, in words."""
    name = args.model or "ensemble"
    cls = model_class(name)
    chosen = [] if args.model else ["model ensemble (an ensemble of small autoencoders; --model ae for one)"]
    if "input_scaling" not in getattr(cls, "fixed_options", {}) and options.get("loss") not in UNIT_INTERVAL_LOSSES and options.get("input_scaling", "standard") is not None:
        options.setdefault("loss", row_loss(cls))
        scaling: str | dict | None = IN_MODEL
    else:
        options["input_scaling"] = None  # the data is min-max scaled instead
        fitted = Scaling.fit(data.x.numpy())
        data = Dataset(torch.from_numpy(fitted.apply(data.x.numpy())), data.y, data.name, data.split, fitted, data.classes, data.ids, data.columns)
        scaling = fitted.to_json()
    chosen += fill_tabular(cls, data.shape[0], options)  # sized from the data, not the image defaults
    return name, data, scaling, chosen


def _rows_said(n: int, noun: str, split: str, calibration: int, val_fraction: float) -> str:
    """Where a data set's rows go, in words: "509 rows (all): 407 train, 51 validation, 51 calibration"."""
    train = n - calibration
    validation = int(round(val_fraction * train))
    parts = [f"{train - validation} train", f"{validation} validation" if validation else "", f"{calibration} calibration" if calibration else ""]
    kept = {"all": " (all)", "train": " (its train split; --split all for every row)"}.get(split, f" (the {split} split)")
    return f"{n} {noun}{kept}: " + ", ".join(p for p in parts if p)


def _calibrate(run: Path, model, data: Dataset, calibration: np.ndarray) -> None:
    """Score the held-out calibration rows and keep their scores in the run (the saved threshold's basis)."""
    from .apps.detect import anomaly_scores

    scores = anomaly_scores(model, data.x[torch.from_numpy(calibration)]) if len(calibration) else np.empty(0)
    atomic_write(run / CALIBRATION, json.dumps({"rows": int(len(calibration)), "scores": scores.tolist()}))


# What the CLI chooses itself from the data (rows for the default ensemble, small image sets), beside the Trainer's defaults.
CLI_NOTES = {"epochs": "about 200 steps for the tabular ensemble", "batch_size": f"{BATCH_SIZE} for the tabular ensemble; fewer than 6,400 images get about 50 steps per epoch", "lr": f"{LR:g} for the tabular ensemble", "val_fraction": "0 for the tabular ensemble"}


def add_trainer_flags(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`Trainer` setting (its field's type, choices and help), defaulting to None: "not given"."""
    for f in dataclasses.fields(Trainer):
        if not f.metadata.get("cli", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        note = f"; {CLI_NOTES[f.name]}" if f.name in CLI_NOTES else ""
        shown = "" if "(default:" in f.metadata["help"] else f" (default: {f.default}{note})"
        if isinstance(f.default, bool):
            p.add_argument(flag, action="store_true", default=None, help=f.metadata["help"] + ("" if "(default:" in f.metadata["help"] else " (default: off)"))
        else:
            kind = f.metadata.get("type", type(f.default))
            p.add_argument(flag, type=kind, choices=f.metadata.get("choices"), help=f.metadata["help"] + shown)


def trainer_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The Trainer settings given on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(Trainer) if getattr(args, f.name, None) is not None}


def cmd_train(args: argparse.Namespace) -> None:
    """Train, holding the run folder's lock (rank 0) from the first file written to the last.

    The command line is the first file of a new run (``command.json``): a run killed before its settings were
    written restarts from it. A new run that fails before training leaves nothing behind."""
    check_seed(args.seed if args.seed is not None else Trainer.seed)
    rank, _ = rank_and_world()
    run = Path(args.resume or args.out) if (args.resume or args.out) else None
    if run is not None and run.exists() and not run.is_dir():
        raise ConfigError(f"{'--resume' if args.resume else '--out'} {run} is a file; name a folder for the run.")
    if args.resume:
        if not run.is_dir():
            raise ConfigError(f"--resume {run}: no such folder, so not a training run.")
        with lock_run(run) if rank == 0 else contextlib.nullcontext():
            _resume(args, run)
        return
    if run is not None and run.is_dir() and any(p.name != LOCK for p in run.iterdir()) and not (run / DATA).exists():
        raise ConfigError(f"--out {run} is a folder that holds other files, not an aekit run; name a new or empty folder.")
    created = run is not None and not run.exists()
    with lock_run(run) if run is not None and rank == 0 else contextlib.nullcontext():
        with _removed_unless_started(run if created and rank == 0 else None):
            if run is not None and rank == 0:
                _record_command(run, getattr(args, "argv", None))
            _train(args, run)


def _record_command(run: Path, argv: list[str] | None) -> None:
    ensure_new_run(run)
    atomic_write(run / COMMAND, json.dumps({"argv": list(sys.argv[1:] if argv is None else argv), "cwd": str(Path.cwd())}, indent=2))


@contextlib.contextmanager
def _removed_unless_started(run: Path | None):
    """Remove the new run folder ``run`` when the block fails before training wrote any state (a bad data file,
    a wrong option), so a failed command leaves nothing behind; an interrupted one stays, to be resumed."""
    try:
        yield
    except AekitError:
        if run is not None and run.is_dir() and {p.name for p in run.iterdir()} <= {LOCK, COMMAND, DATA, CONFIG, TRAINER}:
            shutil.rmtree(run, ignore_errors=True)
        raise


def _resume(args: argparse.Namespace, run: Path) -> None:
    defaults = _train_defaults()
    changed = [f"--{k.replace('_', '-')}" for k, v in vars(args).items() if k not in RESUME_MAY_CHANGE and v != defaults.get(k)]
    if changed:
        raise ConfigError(f"--resume continues a run with its own settings; remove {', '.join(changed)} (only --epochs, --device, --data-dir, --no-progress and --quiet may be given).")
    started = (run / RESUME).exists() or (run / WEIGHTS).exists()
    if not started and not all((run / name).is_file() for name in (DATA, CONFIG, TRAINER)) and (run / COMMAND).is_file():
        _restart(args, run)  # killed before its settings were all written: start again from its command line
        return
    config = read_json(run / CONFIG, "not a training run (no config.json)")
    settings = read_json(run / TRAINER, "not a training run (no trainer.json)")
    if not isinstance(settings, dict):
        raise CheckpointError(f"{run / TRAINER} is not what aekit wrote (expected an object of settings); restore it, or train a new run.")
    for key in ("epochs", "device"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    settings["progress"] = _progress(args)
    trainer = Trainer.from_settings(settings, run / TRAINER)
    data = run_data(run, None, read_spec(run).get("split"), args.data_dir, "train", stream=True)  # the split it trained on
    seed_everything(trainer.seed)  # a run killed before its first checkpoint restarts from the same weights
    model = build_from_config(config, run / CONFIG)
    spec = read_spec(run)
    plan = RowPlan(**spec["rows"]) if spec.get("rows") and isinstance(data, Dataset) else None
    calibration, rows = plan.split(len(data), trainer.seed) if plan else (np.empty(0, dtype=np.int64), None)
    trainer.fit(model, data.x[rows] if rows is not None else data, out=run, resume=True)
    if rank_and_world()[0] == 0:
        if plan:
            _calibrate(run, model, data, calibration)
        if isinstance(data, Dataset) and data.is_text:
            DocumentIndex.build(model, data).save(run)
        print(f"resumed and finished {run}")


def _restart(args: argparse.Namespace, run: Path) -> None:
    """Run a run's recorded command again, in its recorded working folder, into ``run``."""
    intent = read_json(run / COMMAND, "")
    if not (isinstance(intent, dict) and isinstance(intent.get("argv"), list) and all(isinstance(a, str) for a in intent["argv"]) and isinstance(intent.get("cwd"), str)):
        raise CheckpointError(f"{run / COMMAND} is not what aekit wrote (argv, a list of words, and cwd); train a new run instead.")
    try:
        recorded = build_parser().parse_args(intent["argv"])
    except SystemExit:
        raise CheckpointError(f"{run / COMMAND} holds a command this aekit cannot read ({' '.join(intent['argv'])[:120]}); train a new run instead.") from None
    if recorded.command != "train" or recorded.resume:
        raise CheckpointError(f"{run / COMMAND} does not hold an aekit train command; train a new run instead.")
    recorded.out, recorded.quiet, recorded.no_progress = str(run.resolve()), args.quiet, args.no_progress
    if args.epochs is not None:
        recorded.epochs = args.epochs
    folder = Path(intent["cwd"])
    with contextlib.chdir(folder if folder.is_dir() else Path.cwd()):
        _train(recorded, Path(recorded.out))


def _train(args: argparse.Namespace, run: Path | None) -> None:
    rank, world = rank_and_world()
    is_main = rank == 0
    if world > 1 and not (args.out or args.resume):
        raise ConfigError(f"with {world} processes, name the run folder with --out, so that every process writes to the same one.")
    if args.stream:
        data = open_stream(args.dataset, split=args.split or "train")
    else:
        data = load_dataset(
            args.dataset, split=args.split or default_split(args.dataset), data_dir=args.data_dir, label_column=args.label_column,
            id_column=args.id_column, ignore_columns=args.ignore_columns, image_size=args.image_size, scaling=None,
            text_column=args.text_column,
        )
    options = dict(args.option or [])
    for key in ("architecture", "code_size", "hidden", "activation", "output_activation", "loss"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if "input_shape" in options:
        raise ConfigError("input_shape comes from the data set; remove --option input_shape (reshape the data instead).")
    tabular = isinstance(data, Dataset) and len(data.shape) == 1
    text = isinstance(data, Dataset) and data.is_text
    chosen: list[str] = []
    scaling: str | dict | None = None
    if tabular:
        name, data, scaling, chosen = _tabular_setup(args, data, options)
    elif text:
        name = args.model or "hashing"
        chosen += fill_documents(data, options, "model hashing (semantic hashing: binary codes)" if not args.model else None)
    else:
        name = args.model or "ae"
        chosen += fill_images(model_class(name), data.shape, options)  # sized from the images
    model_class(name)  # an unknown model name fails before anything is written
    ensemble_defaults = tabular and name == "ensemble"
    plan = None
    if isinstance(data, Dataset):
        fraction = args.calibration_fraction if args.calibration_fraction is not None else TABULAR_CALIBRATION if tabular else IMAGE_CALIBRATION
        plan = RowPlan(fraction, options.get("members", MEMBERS) if name == "ensemble" else None)
    settings = trainer_settings(args)
    seed = settings.get("seed", Trainer.seed)
    calibration, rows = plan.split(len(data), seed) if plan else (np.empty(0, dtype=np.int64), None)
    if ensemble_defaults:  # sized to the rows: a fixed number of steps, whatever their number
        settings = {"batch_size": BATCH_SIZE, "lr": LR, "val_fraction": 0.0, **settings}
        if "epochs" not in settings:
            settings["epochs"] = epochs_for(STEPS, len(rows), settings["batch_size"])
            chosen.append(f"{settings['epochs']} epochs of {settings['batch_size']} rows (about {STEPS} steps)")
    elif text:
        settings = {"batch_size": DOCUMENT_BATCH, **settings}
        if "epochs" not in settings:
            settings["epochs"] = min(50, epochs_for(DOCUMENT_STEPS, len(rows) if rows is not None else len(data), settings["batch_size"]))
            chosen.append(f"{settings['epochs']} epochs of {settings['batch_size']} documents (about {DOCUMENT_STEPS} steps)")
    elif not tabular and "batch_size" not in settings:  # small image sets get more, smaller steps per epoch
        settings["batch_size"] = batch_size_for(len(rows) if rows is not None else len(data))
        if settings["batch_size"] != Trainer.batch_size:
            chosen.append(f"batch size {settings['batch_size']} (about 50 steps per epoch)")
    trainer = Trainer(**settings, progress=_progress(args))
    seed_everything(seed)
    model = get_model(name, input_shape=data.shape, **options)
    path, mark = data_path(args.dataset, args.stream)
    spec = {
        "dataset": args.dataset,
        "path": path,
        "fingerprint": mark,
        "split": data.split,
        "data_dir": str(Path(args.data_dir).resolve()) if args.data_dir else None,
        "label_column": args.label_column,
        "id_column": args.id_column,
        "ignore_columns": args.ignore_columns,
        "image_size": args.image_size,
        "text_column": args.text_column,
        "columns": getattr(data, "columns", None),
        "scaling": scaling if tabular else (data.scaling.to_json() if getattr(data, "scaling", None) else None),
        "stream": args.stream,
        "rows": plan.to_json() if plan else None,
    }
    new_folder = run is None
    if new_folder:  # a folder under runs/, made by this process alone, holding the command first like --out's
        run = _free_run_dir(name, args.dataset)
    with lock_run(run) if is_main else contextlib.nullcontext(), _removed_unless_started(run if new_folder and is_main else None):
        if new_folder and is_main:
            _record_command(run, getattr(args, "argv", None))
        ensure_new_run(run)
        if is_main:
            # first, so that a run killed before its first checkpoint can be resumed (from the same start)
            atomic_write(run / DATA, json.dumps(spec, indent=2))
            atomic_write(run / CONFIG, json.dumps(model_config(model), indent=2))
            atomic_write(run / TRAINER, json.dumps(dataclasses.asdict(trainer), indent=2))
            if not args.quiet:
                noun, what = ("rows", f"{data.shape[0]} features") if tabular else ("documents", f"{len(data.vocabulary)} words") if text else ("samples", f"shape {data.shape}")
                print(f"aekit: {data.name}: {_rows_said(len(data), noun, data.split, len(calibration), trainer.val_fraction)}, {what}" + "".join(f"; {c}" for c in chosen), file=sys.stderr)
            if isinstance(data, Dataset):
                warn_duplicate_ids(data)
        history = trainer.fit(model, data.x[rows] if rows is not None else data, out=run)
        if not is_main:
            return
        if plan:
            _calibrate(run, model, data, calibration)
        if text:  # every document of the run, searchable (aekit search RUN --text ...)
            DocumentIndex.build(model, data).save(run)
        last = history[-1]
        losses = " ".join(f"{k}={last[k]:.4f}" for k in ("train_loss", "val_loss") if k in last)
        print(f"trained {name} on {data.name} ({len(data)} samples, {len(calibration)} held out to calibrate thresholds) for {len(history)} epochs: {losses}; run folder: {run}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    if args.binarize and args.log_likelihood is None:
        raise ConfigError("--binarize applies to the likelihood estimate only; add --log-likelihood K (e.g. 5000).")
    if args.log_likelihood is not None:
        positive_int("--log-likelihood", args.log_likelihood)
    model = load(args.run, device="cpu")
    data = _run_data(Path(args.run), args, "test")
    if args.retrieval is not None:
        result = {"dataset": data.name, "split": data.split, **retrieval_precision(model, DocumentIndex.load(Path(args.run)), data, positive_int("--retrieval", args.retrieval))}
        print(json.dumps(result, indent=2))
        return
    if model.output_shape != model.input_shape:  # documents: a distribution over the vocabulary, no pixel error
        result = {"dataset": data.name, "split": data.split, "samples": len(data), **evaluate_losses(model, data.x)}
        print(json.dumps(result, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
        return
    x = model.as_batch(data.x)  # images for a flat model (or rows for an image one) compare in the model's shape
    low, high = float(x.min()), float(x.max())
    if getattr(model.reconstruction, "output_activation", None) == "sigmoid" and not (-0.01 <= low and high <= 1.01):  # test rows may stray a little
        print(f"aekit: warning: this model's loss ({model.config.get('loss')}) expects data in [0, 1], but {data.name} ranges over [{low:.3g}, {high:.3g}]; its loss is not meaningful there", file=sys.stderr)
    x_hat = reconstruct(model, x)
    per_sample = squared_error(x_hat, x)
    result = {
        "dataset": data.name,
        "split": data.split,
        "samples": len(data),
        "sum_squared_error_per_sample": per_sample.mean().item(),
        "mean_squared_error_per_feature": per_sample.mean().item() / model.n_features,
    }
    terms = evaluate_losses(model, x)
    result["model_loss"] = terms.pop("loss")
    result["loss_terms"] = terms
    if args.log_likelihood is not None:
        if not args.binarize and model.config.get("loss") == "bernoulli" and bool(((x > 0) & (x < 1)).any()):
            print("aekit: note: grey values under a Bernoulli decoder give no density; --binarize estimates log p(x) of binary draws, as binarised-MNIST tables do", file=sys.stderr)
        result["log_likelihood"] = float(log_likelihood(model, x, k=args.log_likelihood, binarize=args.binarize, progress=sys.stderr.isatty()).mean())
        result["log_likelihood_k"] = args.log_likelihood
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{data.name} [{data.split}], {len(data)} samples")
    print(f"  squared error per sample (sum over {model.n_features} features): {result['sum_squared_error_per_sample']:.4f}")
    print(f"  mean squared error per feature: {result['mean_squared_error_per_feature']:.6f}")
    print(f"  model loss: {result['model_loss']:.4f} ({', '.join(f'{k} {v:.4f}' for k, v in terms.items())})")
    if args.log_likelihood is not None:
        print(f"  log-likelihood (importance-weighted, k = {args.log_likelihood}{', binarised' if args.binarize else ''}): {result['log_likelihood']:.2f} nats per sample")


def cmd_encode(args: argparse.Namespace) -> None:
    model = load(args.run, device="cpu")
    data = run_data(Path(args.run), args.dataset_option or args.dataset, args.split, args.data_dir, "all", id_column=args.id_column, ignore_columns=args.ignore_columns)
    codes = encode(model, data.x)
    out = Path(args.output)
    bits = binary_codes(model, data.x, DocumentIndex.load(Path(args.run)).thresholds) if data.is_text else None
    if out.suffix == ".csv":  # ids (or row numbers) beside the codes
        import pandas as pd

        table = pd.DataFrame(codes, columns=[f"z{i}" for i in range(codes.shape[1])])
        if bits is not None:  # documents: their bits as hex, the first bit the highest
            table.insert(0, "bits", [row.tobytes().hex() for row in np.packbits(bits, axis=1)])
        table.insert(0, "id", data.ids if data.ids is not None else np.arange(len(codes)))
        write_csv(out, table)
    else:
        arrays = {"z": codes}
        if out.suffix == ".npz" and data.y is not None:
            arrays["y"] = data.y.numpy()
        if out.suffix == ".npz" and data.ids is not None:
            arrays["ids"] = np.asarray(data.ids)
        if out.suffix == ".npz" and bits is not None:
            arrays["bits"] = bits
        _write_array(out, **arrays)
    print(f"wrote {codes.shape[0]} codes of size {codes.shape[1]} to {out}")


def cmd_reconstruct(args: argparse.Namespace) -> None:
    if args.n < 1:
        raise ConfigError(f"-n is the number of samples to show: at least 1, got {args.n}.")
    model = load(args.run, device="cpu")
    data = _run_data(Path(args.run), args, "test")
    out = Path(args.output)
    if out.suffix == ".png":
        if len(model.input_shape) != 3:
            raise DataError(f"this model's samples have shape {model.input_shape}, not an image; write -o recon.npy instead.")
        from .plotting import reconstruction_grid

        reconstruction_grid(model, data.x[: args.n], out)
        print(f"wrote a grid of {min(args.n, len(data))} inputs and reconstructions to {out}")
    elif out.suffix in (".npy", ".npz"):
        x_hat = reconstruct(model, data.x).numpy()
        _write_array(out, x_hat=x_hat)
        print(f"wrote {len(x_hat)} reconstructions to {out}")
    else:
        raise ConfigError(f"cannot write {out}: use a .png (image grid) or .npy/.npz (arrays) file name.")


def cmd_export(args: argparse.Namespace) -> None:
    from .export import export_onnx

    path = export_onnx(load(args.run, device="cpu"), args.output)
    print(f"wrote {path}: input x (raw samples, any batch size); outputs x_hat, z, score")


def cmd_list_models(args: argparse.Namespace) -> None:
    for name in list_models():
        doc = (model_class(name).__doc__ or "").strip().splitlines()
        print(f"{name:14s} {doc[0] if doc else ''}")


# -- parser ------------------------------------------------------------------------------------


def _add_data_args(p: argparse.ArgumentParser, dataset_help: str) -> None:
    p.add_argument("--dataset", help=dataset_help)
    p.add_argument("--split", choices=["train", "test", "all"], help="which part of the data set")
    p.add_argument("--data-dir", help="folder holding data files (default: $AEKIT_DATA, then ~/.cache/aekit)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aekit", description="Train and use autoencoders.")
    parser.add_argument("--version", action="version", version=f"aekit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model and write a run folder", description="Train a model and write a run folder (config, weights, metrics, resume state).")
    train.add_argument("--model", help="registered model name (see list-models; default: ae for images, ensemble for rows of features, hashing for documents)")
    train.add_argument("--dataset", default="digits", help="mnist, fashion-mnist, digits, 20news, odds:NAME, or a file/folder path: images, a table, or documents (a folder or .tar.gz of text files, one sub-folder per class) (default: digits)")
    train.add_argument("--split", choices=["train", "test", "all"], help="which part to train on (default: all of your own file or folder; the train split of a named set such as mnist)")
    train.add_argument("--data-dir", help="folder holding data files (default: $AEKIT_DATA, then ~/.cache/aekit)")
    train.add_argument("--label-column", help="label column of a CSV file")
    train.add_argument("--text-column", help="the column of a CSV/parquet file that holds documents (text)")
    train.add_argument("--id-column", help="a CSV column of row ids (names, keys): kept out of the features and written back in outputs")
    train.add_argument("--ignore-columns", type=_names, help="CSV columns to drop, e.g. notes,timestamp")
    train.add_argument("--image-size", metavar="H[xW]", help="resize every image of an image folder to H x W pixels (folders of mixed sizes)")
    train.add_argument("--calibration-fraction", type=float, help="share of rows held out, never trained on, to calibrate detection thresholds (default: 0.2 for rows of features, 0.05 for images)")
    train.add_argument("--architecture", choices=list_architectures(), help="the network the model's objective builds on: mlp or conv (default: the model's choice for the data: conv for vqvae and vae-gan on images, mlp otherwise); its options with --option, e.g. --option channels=[32,64]")
    train.add_argument("--code-size", type=int, help="size of the code z (default: sized from the data for images and rows, else the model's)")
    train.add_argument("--hidden", type=_sizes, help="encoder hidden (fully connected) sizes, e.g. 1000,500,250 (the decoder mirrors them)")
    train.add_argument("--activation", help=f"hidden activation: {', '.join(a for a in ACTIVATIONS if a != 'softmax')} (default: elu for images, the architecture's otherwise)")
    train.add_argument("--output-activation", help="reconstruction activation: sigmoid (data in [0, 1]) or identity")
    train.add_argument("--loss", help=f"{', '.join(RECONSTRUCTION_LOSSES)}: the reconstruction loss, a decoder likelihood (default: the model's: mse, or bernoulli for VAEs)")
    train.add_argument("--option", type=_option, action="append", metavar="KEY=VALUE", help="any other model option (repeatable), e.g. --option code_activation=sigmoid")
    add_trainer_flags(train)
    train.add_argument("--stream", action="store_true", help="read DATA (a .npy file or a folder of .npy shards) from disk in batches instead of loading it")
    train.add_argument("--out", help="run folder (default: a new folder under runs/)")
    train.add_argument("--resume", metavar="RUN", help="continue the interrupted run in folder RUN")
    train.add_argument("--no-progress", action="store_true", help="no progress bar: one line per epoch instead (also what piped output gets)")
    train.add_argument("--quiet", action="store_true", help="print nothing while training")
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser("evaluate", help="reconstruction error on a data set", description="Print the reconstruction error (sum of squares per sample and mean per feature) of a trained model, and with --log-likelihood a VAE's estimate of log p(x).")
    evaluate.add_argument("run", help="run folder or saved model")
    _add_data_args(evaluate, "data set to evaluate on (default: the run's own, test split)")
    evaluate.add_argument("--log-likelihood", type=int, metavar="K", help="also estimate log p(x) in nats per sample from K importance samples (vae, iwae; published tables use 5000)")
    evaluate.add_argument("--binarize", action="store_true", help="with --log-likelihood: estimate it on binary data drawn once ~ Bernoulli(x) (seed 0), as binarised-MNIST tables do")
    evaluate.add_argument("--retrieval", type=int, metavar="K", help="documents: precision@K of the data set's documents querying the run's (relevant = same class), by cosine of codes and by Hamming distance of bits; prints JSON")
    evaluate.add_argument("--json", action="store_true", help="print the numbers as JSON")
    evaluate.set_defaults(func=cmd_evaluate)

    encode = commands.add_parser("encode", help="write the codes of a data set to .npy", description="Encode a data set and write the codes (.npy, or .npz with labels).")
    encode.add_argument("run", help="run folder or saved model")
    encode.add_argument("dataset", nargs="?", help="data set name or file/folder path to encode (default: the run's own)")
    encode.add_argument("--dataset", dest="dataset_option", metavar="DATASET", help="the same, as an option like the other commands'")
    encode.add_argument("--split", choices=["train", "test", "all"], help="which part (default: all)")
    encode.add_argument("--data-dir", help="folder holding data files")
    encode.add_argument("--id-column", help="CSV column of row ids, written beside the codes (default: the run's)")
    encode.add_argument("--ignore-columns", type=_names, help="CSV columns to drop (default: the run's)")
    encode.add_argument("-o", "--output", default="codes.npy", help="output file: .npy, .npz (with labels and ids) or .csv (id, z0, z1, ...) (default: codes.npy)")
    encode.set_defaults(func=cmd_encode)

    reconstruct = commands.add_parser("reconstruct", help="reconstruct samples to an image grid or array", description="Reconstruct samples: a grid of inputs and outputs (.png) or the reconstructions as an array (.npy).")
    reconstruct.add_argument("run", help="run folder or saved model")
    reconstruct.add_argument("dataset", nargs="?", help="data set name or path (default: the run's own, test split)")
    reconstruct.add_argument("--split", choices=["train", "test", "all"], help="which part (default: test)")
    reconstruct.add_argument("--data-dir", help="folder holding data files")
    reconstruct.add_argument("-n", type=int, default=10, help="samples in the grid (default: 10)")
    reconstruct.add_argument("-o", "--output", default="reconstructions.png", help=".png grid or .npy array (default: reconstructions.png)")
    reconstruct.set_defaults(func=cmd_reconstruct)

    add_app_commands(commands, _sizes, _option, _names)

    export = commands.add_parser("export", help="write a run's model as an ONNX graph", description="Export a run's model to ONNX: input x (raw samples; the run's scaling is inside the graph), outputs x_hat, z and the per-sample anomaly score.")
    export.add_argument("run", help="run folder or saved model")
    export.add_argument("--format", choices=["onnx"], default="onnx", help="the file format (default: onnx)")
    export.add_argument("-o", "--output", default="model.onnx", help="the file to write (default: model.onnx)")
    export.set_defaults(func=cmd_export)

    models = commands.add_parser("list-models", help="list the registered models", description="List the registered models.")
    models.set_defaults(func=cmd_list_models)
    return parser


RESUME_MAY_CHANGE = {"resume", "epochs", "device", "data_dir", "no_progress", "quiet", "func", "command", "argv"}


def _train_defaults() -> dict[str, Any]:
    parser = build_parser()
    return vars(parser.parse_args(["train"]))


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a run like Ctrl-C: the last checkpoint stays, --resume continues


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what a new run records as its command
    tune_allocator()  # inference commands allocate large batches too; AEKIT_TUNE_ALLOCATOR=0 turns it off
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        args.func(args)
    except AekitError as exc:
        finish()
        print(f"aekit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aekit: interrupted; a training run can be continued with: aekit train --resume RUN", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    finish(wait=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
