"""What each core command of ``aekit`` does (``aekit/cli.py`` parses the command line and calls these)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .runfiles import CALIBRATION, COMMAND, CONFIG, DATA, RESUME, TRAINER, WEIGHTS
from .checkpoint import atomic_write, build_from_config, load, lock_run, model_config, read_json
from .data import Dataset, Scaling, default_split, load_dataset
from .data.files import image_folder_sizes
from .apps.documents import DocumentIndex, binary_codes, retrieval_precision
from .defaults import BATCH_SIZE, CALIBRATION_ROWS, DOCUMENT_BATCH, DOCUMENT_STEPS, IMAGE_CALIBRATION, LR, MEMBERS, PHOTO_BATCH, PHOTO_CALIBRATION, STEPS, TABULAR_CALIBRATION, RowPlan, batch_size_for, epochs_for, fill_documents, fill_images, fill_tabular, photo_defaults, photo_training, row_loss
from .runs import IN_MODEL, data_path, read_spec, run_data, warn_duplicate_ids, write_csv
from .errors import CheckpointError, ConfigError, DataError
from .losses import squared_error
from .validation import check_range, positive_int
from .apps.common import encode, reconstruct
from .apps.generate import log_likelihood
from .registry import get_model, list_models, model_class
from .data.stream import open_stream
from .training import Trainer, evaluate_losses, seed_everything
from .training.distributed import rank_and_world
from .training.trainer import ensure_new_run
from .cli import RESUME_MAY_CHANGE, _train_defaults, build_parser, record_command, removed_unless_started


# -- helpers ---------------------------------------------------------------------------------


def _progress(args: argparse.Namespace) -> bool | str:
    """The Trainer's progress setting: a bar (lines when piped), lines only, or nothing."""
    return False if args.quiet else "lines" if args.no_progress else True


def _free_run_dir(model: str, dataset: str) -> Path:
    """A new folder ``runs/MODEL-DATA[-K]``, made here: two commands started at once never get the same one."""
    stem = Path("runs") / f"{model}-{Path(dataset).stem.replace(':', '-')}"[:200]
    path, n = stem, 1
    while True:
        try:
            stem.parent.mkdir(exist_ok=True)
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
        data = dataclasses.replace(data, x=torch.from_numpy(fitted.apply(data.x.numpy())), scaling=fitted)
        scaling = fitted.to_json()
    if data.categories:
        said = ", ".join(f"{column} ({len(values)} values)" for column, values in data.categories.items())
        chosen.append(f"category columns: {said}, one indicator per value; an unseen value scores as unusual")
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


def trainer_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The Trainer settings given on the command line."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(Trainer) if getattr(args, f.name, None) is not None}


def cmd_train(args: argparse.Namespace) -> None:
    """Train a new run, or resume one (``aekit.cli.claimed_run`` has already locked a named run folder and written
    its command line, before the heavy imports)."""
    run = Path(args.resume or args.out) if (args.resume or args.out) else None
    with lock_run(run) if run is not None and rank_and_world()[0] == 0 else contextlib.nullcontext():  # held already: re-entered
        if args.resume:
            _resume(args, run)
        else:
            _train(args, run)


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
    folder = Path(str(args.dataset)).expanduser()
    photo_model, photo_size = photo_defaults(image_folder_sizes(folder)) if not args.stream and folder.is_dir() else (None, None)
    resized = bool(photo_size) and args.image_size is None
    if resized:  # photographs of mixed sizes: one grid for the network
        args.image_size = photo_size
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
        name = args.model or photo_model or "ae"
        if photo_model and not args.model:
            chosen.append(f"model {photo_model} (photographs: finds and outlines defects; --model conv for a plain autoencoder)")
        if resized:
            chosen.append(f"images resized to {photo_size}x{photo_size} (--image-size H[xW] for another size)")
        chosen += fill_images(model_class(name), data.shape, options)  # sized from the images
    model_class(name)  # an unknown model name fails before anything is written
    ensemble_defaults = tabular and name == "ensemble"
    plan = None
    if isinstance(data, Dataset):
        fraction = args.calibration_fraction if args.calibration_fraction is not None else TABULAR_CALIBRATION if tabular else PHOTO_CALIBRATION if name == "draem" else IMAGE_CALIBRATION
        check_range("--calibration-fraction", fraction, 0, 1, high_open=True)
        plan = RowPlan(fraction, options.get("members", MEMBERS) if name == "ensemble" else None, calibration_rows=CALIBRATION_ROWS)
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
    elif name == "draem":  # a fixed budget of steps, whatever the number of images
        precision, steps = photo_training(settings.get("device", Trainer.device), settings.get("precision"))
        if "precision" not in settings and precision != Trainer.precision:
            settings["precision"] = precision
            chosen.append(f"{precision} mixed precision (this CPU computes in bfloat16: twice the steps in the same time)")
        settings = {"batch_size": PHOTO_BATCH, **settings}
        if "epochs" not in settings:
            settings["epochs"] = epochs_for(steps, len(rows) if rows is not None else len(data), settings["batch_size"])
            chosen.append(f"{settings['epochs']} epochs of {settings['batch_size']} images (about {steps} steps)")
    if not tabular and not text and "batch_size" not in settings:  # small image sets get more, smaller steps per epoch
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
        "categories": getattr(data, "categories", None),
        "scaling": scaling if tabular else (data.scaling.to_json() if getattr(data, "scaling", None) else None),
        "stream": args.stream,
        "rows": plan.to_json() if plan else None,
    }
    new_folder = run is None
    if new_folder:  # a folder under runs/, made by this process alone, holding the command first like --out's
        run = _free_run_dir(name, args.dataset)
    with lock_run(run) if is_main else contextlib.nullcontext(), removed_unless_started(run if new_folder and is_main else None):
        if new_folder and is_main:
            record_command(run, getattr(args, "argv", None))
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
    print(json.dumps({"inputs": {"x": "raw samples, any batch size"}, "outputs": ["x_hat", "z", "score"], "wrote": [str(path)]}, indent=2))


def cmd_list_models(args: argparse.Namespace) -> None:
    for name in list_models():
        doc = (model_class(name).__doc__ or "").strip().splitlines()
        print(f"{name:14s} {doc[0] if doc else ''}")

