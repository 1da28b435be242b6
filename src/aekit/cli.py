"""The ``aekit`` command line: its parser, and ``main``, which runs a command's function from ``aekit.commands``
(train, evaluate, encode, reconstruct, export, list-models) or ``aekit.apps.commands`` (the applications).

Building the parser imports no PyTorch, so ``aekit --help`` and argument errors answer at once; a command
imports what it needs when it runs. Errors a user can cause are printed as one line (``aekit: error: ...``)
with exit status 2; no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from . import __version__
from ._lazy import later
from .apps.cli import add_commands as add_app_commands
from .defaults import BATCH_SIZE, LR, STEPS
from .errors import AekitError, CheckpointError, ConfigError
from .fileio import atomic_write, lock_run
from .runfiles import COMMAND, CONFIG, DATA, LOCK, RESUME, TRAINER, WEIGHTS
from .settings import ACTIVATION_NAMES, ARCHITECTURE_NAMES, LOSS_NAMES, TrainerSettings, check_seed
from .training.allocator import tune_allocator


# -- argument types and flags ------------------------------------------------------------------


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 1000,500,250, got {text!r}") from None


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    if value.lstrip().startswith(("[", "{")):  # meant as JSON: malformed JSON is an error, not a string
        try:
            return key.replace("-", "_"), json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            raise argparse.ArgumentTypeError(f"{key}={value[:40]}{'...' if len(value) > 40 else ''} is not valid JSON (e.g. hidden=[256,128], nested at most a few levels)") from None
    try:
        return key.replace("-", "_"), json.loads(value)
    except (json.JSONDecodeError, RecursionError):
        return key.replace("-", "_"), value  # a bare string such as gaussian


# What the CLI chooses itself from the data (rows for the default ensemble, small image sets), beside the Trainer's defaults.
CLI_NOTES = {"epochs": f"about {STEPS} steps for the tabular ensemble", "batch_size": f"{BATCH_SIZE} for the tabular ensemble; fewer than 6,400 images get about 50 steps per epoch", "lr": f"{LR:g} for the tabular ensemble", "val_fraction": "0 for the tabular ensemble"}


def add_trainer_flags(p: argparse.ArgumentParser) -> None:
    """One flag per :class:`aekit.Trainer` setting (its field's type, choices and help), defaulting to None: "not given"."""
    for f in dataclasses.fields(TrainerSettings):
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


# -- the run folder, claimed before anything heavy is imported ---------------------------------------


@contextlib.contextmanager
def claimed_run(args: argparse.Namespace):
    """For ``aekit train`` with a named folder (rank 0), before torch is imported: hold the folder's lock for the
    whole command and, for a new run, write its command line first (``command.json``), so that a run killed at any
    moment can be resumed; a new run that fails before training leaves nothing behind. Other commands: nothing."""
    folder = getattr(args, "resume", None) or getattr(args, "out", None)
    if args.command != "train" or folder is None or int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    check_seed(args.seed if args.seed is not None else TrainerSettings.seed)
    run = Path(folder)
    try:
        run.exists()
    except OSError as exc:  # a name longer than the file system allows (255 bytes), ...
        raise ConfigError(f"{'--resume' if args.resume else '--out'} {folder[:60]}...: {exc.strerror or exc}; choose a shorter folder name.") from None
    if run.exists() and not run.is_dir():
        raise ConfigError(f"{'--resume' if args.resume else '--out'} {run} is a file; name a folder for the run.")
    if args.resume and not run.is_dir():
        raise ConfigError(f"--resume {run}: no such folder, so not a training run.")
    if not args.resume and run.is_dir() and any(p.name != LOCK for p in run.iterdir()) and not (run / DATA).exists():
        raise ConfigError(f"--out {run} is a folder that holds other files, not an aekit run; name a new or empty folder.")
    created = not run.exists()
    with lock_run(run), removed_unless_started(run if created else None):
        if not args.resume:
            record_command(run, getattr(args, "argv", None))
        yield


def record_command(run: Path, argv: list[str] | None) -> None:
    """Write a new run's command line and working folder (``command.json``): what a resume restarts from when the
    run was killed before its settings were written."""
    if (run / RESUME).exists() or (run / WEIGHTS).exists():
        raise CheckpointError(f"{run} already holds a training run; resume it (--resume) or choose another folder.")
    atomic_write(run / COMMAND, json.dumps({"argv": list(sys.argv[1:] if argv is None else argv), "cwd": str(Path.cwd())}, indent=2))


@contextlib.contextmanager
def removed_unless_started(run: Path | None):
    """Remove the new run folder ``run`` when the block fails before training wrote any state (a bad data file,
    a wrong option), so a failed command leaves nothing behind; an interrupted one stays, to be resumed."""
    try:
        yield
    except AekitError:
        if run is not None and run.is_dir() and {p.name for p in run.iterdir()} <= {LOCK, COMMAND, DATA, CONFIG, TRAINER}:
            shutil.rmtree(run, ignore_errors=True)
        raise


# -- parser ------------------------------------------------------------------------------------


def _add_data_args(p: argparse.ArgumentParser, dataset_help: str) -> None:
    p.add_argument("--dataset", help=dataset_help)
    p.add_argument("--split", choices=["train", "test", "all"], help="which part of the data set")
    p.add_argument("--data-dir", help="folder holding data files (default: $AEKIT_DATA, then ~/.cache/aekit)")


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line (the usage block of ``aekit train`` alone is 20 lines)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="aekit", description="Train and use autoencoders.")
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
    train.add_argument("--architecture", choices=ARCHITECTURE_NAMES, help="the network the model's objective builds on: mlp or conv (default: the model's choice for the data: conv for vqvae and vae-gan on images, mlp otherwise); its options with --option, e.g. --option channels=[32,64]")
    train.add_argument("--code-size", type=int, help="size of the code z (default: sized from the data for images and rows, else the model's)")
    train.add_argument("--hidden", type=_sizes, help="encoder hidden (fully connected) sizes, e.g. 1000,500,250 (the decoder mirrors them)")
    train.add_argument("--activation", help=f"hidden activation: {', '.join(a for a in ACTIVATION_NAMES if a != 'softmax')} (default: elu for images, the architecture's otherwise)")
    train.add_argument("--output-activation", help="reconstruction activation: sigmoid (data in [0, 1]) or identity")
    train.add_argument("--loss", help=f"{', '.join(LOSS_NAMES)}: the reconstruction loss, a decoder likelihood (default: the model's: mse, or bernoulli for VAEs)")
    train.add_argument("--option", type=_option, action="append", metavar="KEY=VALUE", help="any other model option (repeatable), e.g. --option code_activation=sigmoid")
    add_trainer_flags(train)
    train.add_argument("--stream", action="store_true", help="read DATA (a .npy file or a folder of .npy shards) from disk in batches instead of loading it")
    train.add_argument("--out", help="run folder (default: a new folder under runs/)")
    train.add_argument("--resume", metavar="RUN", help="continue the interrupted run in folder RUN")
    train.add_argument("--no-progress", action="store_true", help="no progress bar: one line per epoch instead (also what piped output gets)")
    train.add_argument("--quiet", action="store_true", help="print nothing while training")
    train.set_defaults(func=later("aekit.commands", "cmd_train"))

    evaluate = commands.add_parser("evaluate", help="reconstruction error on a data set", description="Print the reconstruction error (sum of squares per sample and mean per feature) of a trained model, and with --log-likelihood a VAE's estimate of log p(x).")
    evaluate.add_argument("run", help="run folder or saved model")
    _add_data_args(evaluate, "data set to evaluate on (default: the run's own, test split)")
    evaluate.add_argument("--log-likelihood", type=int, metavar="K", help="also estimate log p(x) in nats per sample from K importance samples (vae, iwae; published tables use 5000)")
    evaluate.add_argument("--binarize", action="store_true", help="with --log-likelihood: estimate it on binary data drawn once ~ Bernoulli(x) (seed 0), as binarised-MNIST tables do")
    evaluate.add_argument("--retrieval", type=int, metavar="K", help="documents: precision@K of the data set's documents querying the run's (relevant = same class), by cosine of codes and by Hamming distance of bits; prints JSON")
    evaluate.add_argument("--json", action="store_true", help="print the numbers as JSON")
    evaluate.set_defaults(func=later("aekit.commands", "cmd_evaluate"))

    encode = commands.add_parser("encode", help="write the codes of a data set to .npy", description="Encode a data set and write the codes (.npy, or .npz with labels).")
    encode.add_argument("run", help="run folder or saved model")
    encode.add_argument("dataset", nargs="?", help="data set name or file/folder path to encode (default: the run's own)")
    encode.add_argument("--dataset", dest="dataset_option", metavar="DATASET", help="the same, as an option like the other commands'")
    encode.add_argument("--split", choices=["train", "test", "all"], help="which part (default: all)")
    encode.add_argument("--data-dir", help="folder holding data files")
    encode.add_argument("--id-column", help="CSV column of row ids, written beside the codes (default: the run's)")
    encode.add_argument("--ignore-columns", type=_names, help="CSV columns to drop (default: the run's)")
    encode.add_argument("-o", "--output", default="codes.npy", help="output file: .npy, .npz (with labels and ids) or .csv (id, z0, z1, ...) (default: codes.npy)")
    encode.set_defaults(func=later("aekit.commands", "cmd_encode"))

    reconstruct = commands.add_parser("reconstruct", help="reconstruct samples to an image grid or array", description="Reconstruct samples: a grid of inputs and outputs (.png) or the reconstructions as an array (.npy).")
    reconstruct.add_argument("run", help="run folder or saved model")
    reconstruct.add_argument("dataset", nargs="?", help="data set name or path (default: the run's own, test split)")
    reconstruct.add_argument("--split", choices=["train", "test", "all"], help="which part (default: test)")
    reconstruct.add_argument("--data-dir", help="folder holding data files")
    reconstruct.add_argument("-n", type=int, default=10, help="samples in the grid (default: 10)")
    reconstruct.add_argument("-o", "--output", default="reconstructions.png", help=".png grid or .npy array (default: reconstructions.png)")
    reconstruct.set_defaults(func=later("aekit.commands", "cmd_reconstruct"))

    add_app_commands(commands, _sizes, _option, _names)

    export = commands.add_parser("export", help="write a run's model as an ONNX graph", description="Export a run's model to ONNX: input x (raw samples; the run's scaling is inside the graph), outputs x_hat, z and the per-sample anomaly score.")
    export.add_argument("run", help="run folder or saved model")
    export.add_argument("--format", choices=["onnx"], default="onnx", help="the file format (default: onnx)")
    export.add_argument("-o", "--output", default="model.onnx", help="the file to write (default: model.onnx)")
    export.set_defaults(func=later("aekit.commands", "cmd_export"))

    models = commands.add_parser("list-models", help="list the registered models", description="List the registered models.")
    models.set_defaults(func=later("aekit.commands", "cmd_list_models"))
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
        with claimed_run(args):
            args.func(args)
    except AekitError as exc:
        _give_back_results()
        _leave_process_group()
        print(f"aekit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _give_back_results()
        print("aekit: interrupted; a training run can be continued with: aekit train --resume RUN", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    _leave_process_group(wait=True)
    return 0


def _give_back_results() -> None:
    if "aekit.runs" in sys.modules:  # a command that named a result (results/NAME-K) and failed before writing it
        sys.modules["aekit.runs"].release_unwritten()


def _leave_process_group(wait: bool = False) -> None:
    if "torch" in sys.modules:  # a command that never imported torch joined no process group
        from .training.distributed import finish

        finish(wait=wait)


if __name__ == "__main__":
    sys.exit(main())
