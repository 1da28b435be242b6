"""What each application command of ``aekit`` does: load a fitted run, call one application, report (``apps/cli.py`` holds their part of the parser)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import atomic_write, load, read_json
from ..data.categories import by_column
from ..data.text import decode
from ..errors import CheckpointError, ConfigError, DataError
from ..plotting import image_grid
from ..runfiles import CALIBRATION, RESULTS
from ..runs import result_output, result_stem, run_data, save_result, warn_duplicate_ids, write_csv
from .common import reconstruct


def _data(args: argparse.Namespace, default_split: str):
    return run_data(
        Path(args.run), args.dataset, args.split, args.data_dir, default_split,
        id_column=getattr(args, "id_column", None), ignore_columns=getattr(args, "ignore_columns", None),
    )


def _images(model) -> None:
    if len(model.input_shape) != 3:
        raise DataError(f"this model's samples have shape {model.input_shape}, not images; there is no picture to draw.")


def _output(args, name: str, run: str | Path | None = None, suffix: str = ".png") -> tuple[str, Path]:
    """This call's result name (``NAME-K``) and where its picture goes: ``-o``, else ``RUN/results/NAME-K.png``."""
    run = Path(run if run is not None else args.run)
    stem = result_stem(run, name)
    return stem, result_output(run, stem, getattr(args, "output", None), suffix)


def _report(run: str | Path, stem: str, numbers: dict, figure: Path | None, *also: Path) -> None:
    """Keep the numbers (and picture) in RUN/results and print them with every path written."""
    kept = save_result(Path(run), stem, numbers, figure)
    wrote = [str(p) for p in dict.fromkeys([*(x for x in (figure, *also) if x is not None and x.exists()), *kept])]
    print(json.dumps({**numbers, "wrote": wrote}, indent=2))


def cmd_embed(args):
    from .embed import embed, plot_embedding

    model, data = load(args.run), _data(args, "test")
    stem, out = _output(args, "embed")
    result = embed(model, data, method=args.method, max_points=args.max_points, seed=args.seed)
    plot_embedding(result, out, title=f"{data.name} [{data.split}]", classes=data.classes)
    _report(args.run, stem, {"method": args.method, "samples": len(result.pca), **result.summary()}, out)


def cmd_denoise(args):
    from .denoise import denoise

    model, data = load(args.run), _data(args, "test")
    stem, out = _output(args, "denoise")
    result = denoise(model, data.x, noise=args.noise, seed=args.seed)
    if len(model.input_shape) == 3:
        n = args.n
        image_grid([("noisy", result.noisy[:n].numpy()), ("denoised", result.denoised[:n].numpy()), ("clean", data.x[:n].numpy())], out)
    _report(args.run, stem, {"noise": args.noise, "samples": len(data), **result.summary()}, out if out.exists() else None)


def cmd_detect(args):
    from .detect import detect, feature_contributions, plot_score_histogram
    from .segment import model_maps

    run = Path(args.run)
    model, data = load(args.run), _data(args, "test")
    if args.normal_class is not None:
        if data.y is None:
            raise DataError(f"{data.name} has no labels, so --normal-class cannot mark anomalies.")
        anomalous = ~np.isin(data.y.numpy(), class_indices(data, args.normal_class))
    elif data.y is not None and set(data.y.unique().tolist()) <= {0, 1} and len(data.y.unique()) == 2:
        anomalous = data.y.numpy().astype(bool)  # the ODDS convention: 1 = outlier
    else:
        anomalous = None
    stem, out = _output(args, "detect")
    table = out.suffix.lower() == ".csv" or out == Path(os.devnull)
    if not table and out.suffix.lower() != ".png":
        raise ConfigError(f"cannot write {out}: use a .csv file (one line per sample) or a .png file (the score histogram).")
    calibration = None
    if args.contamination is None and args.percentile is None and (run / CALIBRATION).is_file():
        saved = read_json(run / CALIBRATION, "not a calibration file")
        scores = saved.get("scores", []) if isinstance(saved, dict) else []
        numbers = isinstance(scores, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores)
        calibration = np.asarray(scores if numbers else [], dtype=np.float64)
        if not len(calibration) or not np.isfinite(calibration).all():
            raise CheckpointError(f"{run / CALIBRATION} holds no usable calibration scores; pass --contamination or --percentile.")
    elif args.contamination is None and args.percentile is None:
        print(f"aekit: {run} has no calibration scores (trained before aekit saved them): flagging the top 10% of the scored rows", file=sys.stderr)
    reference = _data(argparse.Namespace(**{**vars(args), "split": args.reference_split}), "train").x if args.reference_split else None
    grid = model_maps(model, data.x) if hasattr(model, "map_score") else None  # one pass of the network: scores, maps, outlines
    result = detect(
        model, data.x, anomalous, calibration=calibration, false_alarm_rate=args.false_alarm_rate,
        reference=reference, contamination=args.contamination, percentile=args.percentile,
        scores=None if grid is None else model.map_score(grid).double().numpy(),
    )
    warn_duplicate_ids(data)
    if table:
        write_scores(out, result, data, model, feature_contributions)
    else:
        plot_score_histogram(result, anomalous, out, title=f"{data.name} [{data.split}]")
    maps = None
    if len(model.input_shape) == 3 and run.is_dir():  # images: where the most anomalous ones differ, pixel by pixel
        maps = draw_anomaly_maps(run / RESULTS / f"{stem}-maps.png", model, data.x, result.scores, feature_contributions, data.ids)
    pixels, overlays = _pixel_level(args, run, stem, model, data, result, grid)
    numbers = {**result.summary(), **pixels, **flagged_ids(result, data, out if table and out != Path(os.devnull) else None)}
    _report(run, stem, numbers, None if table else out, *[p for p in (out if table else None, maps, overlays) if p is not None])


def _pixel_level(args, run: Path, stem: str, model, data, result, grid=None) -> tuple[dict, Path | None]:
    """For images read from a folder: each image's anomaly map in its own pixel grid, written over it (with
    ``--maps``, or by default for a model that outlines defects or with ``--masks``), and with ``--masks`` the
    pixel-level ROC AUC and PRO. ``grid``: the maps at the model's size, when already computed. Returns the
    numbers and the folder of maps."""
    from ..runs import read_spec
    from ..data.files import image_size
    from .segment import find_masks, model_maps, pixel_roc_auc, pro, read_mask, resize_map, write_overlays

    wanted = args.masks is not None or args.maps is not None or hasattr(model, "anomaly_map")
    if len(model.input_shape) != 3 or not wanted:
        if args.masks is not None or args.maps is not None:
            raise ConfigError("--masks and --maps are for models of images; this run's samples are not images.")
        return {}, None
    folder = Path(args.dataset).expanduser() if args.dataset else Path(str(read_spec(run).get("path") or ""))
    if data.ids is None or not folder.is_dir():
        if args.masks is not None or args.maps is not None:
            raise DataError(f"--masks and --maps need images read from a folder (--dataset DIR); {data.name} is not one.")
        return {}, None
    sizes = [image_size(folder / i) for i in data.ids]
    grid = model_maps(model, data.x) if grid is None else grid  # the maps, and the outlines read from them
    maps = [resize_map(m, size) for m, size in zip(grid, sizes)]
    found = find_masks(Path(args.masks).expanduser(), folder, data.ids) if args.masks is not None else {}
    truth = [read_mask(found[i], size, folder / i) if i in found else np.zeros(size, bool) for i, size in zip(data.ids, sizes)]
    numbers: dict = {}
    if args.masks is not None:
        numbers = {"pixel_roc_auc": pixel_roc_auc(maps, truth), "pro": pro(maps, truth), "masks": len(found)}
    outlines = model.outline_maps(grid, sizes, result.threshold) if hasattr(model, "outline_maps") else None
    where = Path(args.maps).expanduser() if args.maps is not None else run / RESULTS / f"{stem}-maps"
    write_overlays(where, folder, data.ids, maps, outlines, truth if found else None, npy=args.maps_npy)
    return numbers, where


def flagged_ids(result, data, table: Path | None, shown: int = 10) -> dict:
    """The ids (else row numbers) of the highest-scoring flagged samples, and where the full list is."""
    flagged = np.flatnonzero(result.predictions)
    top = flagged[np.argsort(-result.scores[flagged], kind="stable")][:shown]
    ids = [data.ids[i] if data.ids is not None else int(i) for i in top]
    where = str(table) if table is not None else "add -o scores.csv for every one"
    return {"flagged_ids": ids, "flagged_list": where} if len(flagged) else {}


def class_indices(data, names: list[str]) -> list[int]:
    """The label numbers of classes given by name (a sub-folder's) or by number."""
    indices = []
    for name in names:
        if data.classes is not None and name in data.classes:
            indices.append(data.classes.index(name))
        elif name.lstrip("-").isdigit() and (data.classes is None or 0 <= int(name) < len(data.classes)):
            indices.append(int(name))
        else:
            known = f"its classes are {', '.join(data.classes[:12])}{' ...' if len(data.classes) > 12 else ''}" if data.classes else "its labels are numbers"
            raise DataError(f"{data.name} has no class {name!r}; {known}.")
    return indices


def draw_anomaly_maps(path: Path, model, x: torch.Tensor, scores: np.ndarray, contributions, ids: list[str] | None = None, n: int = 8) -> Path:
    """The ``n`` highest-scoring images above their reconstructions and their per-pixel error maps, each column
    titled with its image's id (its file's path, shortened) and score."""
    order = np.argsort(scores)[::-1][:n].copy()
    top = torch.from_numpy(order)
    images = x[top]
    rebuilt = reconstruct(model, images)
    maps = contributions(model, images)
    maps = maps / np.maximum(maps.reshape(len(maps), -1).max(1), 1e-12).reshape(-1, *[1] * (maps.ndim - 1))
    rows = [("most anomalous", images.numpy()), ("reconstruction", rebuilt.numpy()), ("error map", maps.astype(np.float32))]
    names = [_short(str(ids[i]) if ids is not None else f"#{i}") + f"\n{scores[i]:.3g}" for i in order]
    return image_grid(rows, path, title="where the highest-scoring images differ from their reconstructions", column_titles=names)


def _short(name: str, most: int = 16) -> str:
    return name if len(name) <= most else "…" + name[-(most - 1):]


def write_scores(path: Path, result, data, model, contributions, top: int = 3) -> None:
    """One line per sample: id, score, p-value, flagged and, for flagged rows, the features that contribute most
    (``top_features``: a JSON list of ``[column, share of the row's error]`` pairs, largest first)."""
    import pandas as pd

    table = pd.DataFrame({"id": data.ids if data.ids is not None else np.arange(len(result.scores)), "score": result.scores})
    if result.pvalues is not None:
        table["pvalue"] = result.pvalues
    table["flagged"] = result.predictions.astype(bool)
    flagged = np.flatnonzero(result.predictions)
    names = data.columns or [str(j) for j in range(model.n_features)]
    table["top_features"] = ""
    if len(flagged) and len(model.input_shape) == 1:
        names, shares = by_column(contributions(model, data.x[torch.from_numpy(flagged)]), names, data.categories)  # a category's indicators: its column
        for row, share in zip(flagged, shares):
            best = np.argsort(share)[::-1][:top]
            table.loc[row, "top_features"] = json.dumps([[names[j], round(float(share[j]), 4)] for j in best])
    write_csv(path, table)


def cmd_protocol(args):
    from ..defaults import fill_images
    from ..registry import model_class
    from ..training import Trainer
    from .protocols import mnist_one_class, odds

    options = dict(args.option or [])
    for key in ("code_size", "hidden"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    trainer = Trainer(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, val_fraction=0.0, progress=not args.no_progress)
    if args.name == "mnist-one-class":
        fill_images(model_class(args.model), (1, 28, 28), options)  # sized as aekit train sizes them
        result = mnist_one_class(args.digits, args.model, options, trainer, args.data_dir)
        numbers = {"protocol": "mnist-one-class", "model": args.model, "roc_auc": result.roc_auc, "mean_roc_auc": result.mean_roc_auc}
    else:
        numbers = {"protocol": "odds", "model": args.model, "seeds": args.seeds, "sets": {}}
        for name in args.sets:
            result = odds(name, args.seeds, args.model, options, trainer, args.data_dir)
            numbers["sets"][name] = {"mean_roc_auc": result.mean_roc_auc, "mean_average_precision": float(np.mean(list(result.average_precision.values())))}
    if args.output:
        atomic_write(Path(args.output), json.dumps(numbers, indent=2))
    print(json.dumps(numbers, indent=2))


def cmd_sample(args):
    from .generate import grid_rows, sample

    model = load(args.run)
    _images(model)
    stem, out = _output(args, "sample")
    image_grid(grid_rows(sample(model, args.n, seed=args.seed), args.per_row), out)
    _report(args.run, stem, {"samples": args.n, "seed": args.seed}, out)


def cmd_interpolate(args):
    from .generate import interpolate

    model, data = load(args.run), _data(args, "test")
    _images(model)
    for index in (args.a, args.b):
        if not 0 <= index < len(data):
            raise DataError(f"sample {index} does not exist; {data.name} [{data.split}] has {len(data)} samples.")
    stem, out = _output(args, "interpolate")
    path = interpolate(model, data.x[args.a], data.x[args.b], steps=args.steps)
    image_grid([(f"{args.a} -> {args.b}", path.numpy())], out)
    _report(args.run, stem, {"from": args.a, "to": args.b, "steps": args.steps}, out)


def cmd_traverse(args):
    from .generate import traversal

    model, data = load(args.run), _data(args, "test")
    _images(model)
    if not 0 <= args.index < len(data):
        raise DataError(f"sample {args.index} does not exist; {data.name} [{data.split}] has {len(data)} samples.")
    grid = traversal(model, data.x[args.index], data.x[:2000], dims=args.dims, span=args.span, steps=args.steps)
    dims = args.dims if args.dims is not None else list(range(len(grid)))
    stem, out = _output(args, "traverse")
    image_grid([(f"z{d}", row.numpy()) for d, row in zip(dims, grid)], out)
    _report(args.run, stem, {"sample": args.index, "units": [int(d) for d in dims], "span": args.span, "steps": args.steps}, out)


def cmd_probe(args):
    from .probe import probe

    model = load(args.run)
    train = run_data(Path(args.run), args.dataset, "train", args.data_dir, "train")
    test = run_data(Path(args.run), args.dataset, "test", args.data_dir, "test")
    accuracy = probe(model, train, test)
    _report(args.run, result_stem(Path(args.run), "probe"), {"classifier": "StandardScaler + LogisticRegression", "code_size": model.code_size, "accuracy": accuracy}, None)


def cmd_index(args):
    from .common import encode
    from .retrieve import CodeIndex

    model, data = load(args.run), _data(args, "train")
    approximate = {"auto": "auto", "yes": True, "no": False}[args.approximate]
    info = {"run": str(Path(args.run).resolve()), "dataset": data.name, "split": data.split, "data_dir": args.data_dir}
    index = CodeIndex.build(encode(model, data.x), None if data.y is None else data.y.numpy(), args.metric, approximate, info=info)
    index.save(args.output)
    print(f"indexed {len(data)} codes ({'approximate, FAISS IVF' if index.approximate else 'exact'}, {args.metric}) in {args.output}")


def cmd_search(args):
    from .common import encode
    from .retrieve import CodeIndex, precision_at_k

    if args.text is not None or args.file is not None:
        return _search_documents(args)
    index = CodeIndex.load(args.index)
    if not isinstance(index.info.get("run"), str):
        raise CheckpointError(f"{args.index}/index.json does not name the run it indexes; rebuild the index with aekit index.")
    model = load(index.info["run"])
    queries = run_data(Path(index.info["run"]), args.query, args.split, args.data_dir or index.info.get("data_dir"), "test")
    chosen = args.queries if args.queries is not None else list(range(min(5, len(queries))))
    if any(not 0 <= q < len(queries) for q in chosen):
        raise DataError(f"query indices must be below {len(queries)}.")
    _, hits = index.search(encode(model, queries.x[chosen]), args.k)
    numbers: dict = {"k": args.k, "metric": index.metric, "approximate": index.approximate, "queries": chosen, "neighbours": hits.tolist()}
    if index.labels is not None and queries.y is not None:
        everything = encode(model, queries.x)
        numbers["precision_at_k"] = precision_at_k(index, everything, queries.y.numpy(), args.k)
        numbers["precision_queries"] = len(everything)
    stem, out = _output(args, "search", run=index.info["run"])
    if len(model.input_shape) == 3:
        collection = run_data(Path(index.info["run"]), index.info["dataset"], index.info["split"], index.info.get("data_dir"), "train")
        rows = [(f"query {q}", np.concatenate([queries.x[q : q + 1].numpy(), collection.x[row].numpy()])) for q, row in zip(chosen, hits)]
        image_grid(rows, out, column_titles=["query", *(f"hit {i}" for i in range(1, args.k + 1))], frame_first=True)
    _report(index.info["run"], stem, numbers, out if out.exists() else None)


def _search_documents(args):
    """``aekit search RUN --text "..."``: the run's documents nearest a free text, as JSON."""
    from .documents import DocumentIndex, search_text

    if args.text is not None and args.file is not None:
        raise ConfigError("give the query as --text or as --file, not both.")
    if args.query is not None:
        raise ConfigError("with --text or --file, name only the run folder.")
    if args.k < 1:
        raise ConfigError(f"-k is the number of hits: at least 1, got {args.k}.")
    if args.file is not None:
        try:
            text = decode(Path(args.file).read_bytes(), args.file)[0]
        except OSError as exc:
            raise DataError(f"cannot read {args.file} ({exc.strerror or exc}).") from None
    else:
        text = args.text
    run = Path(args.index)
    index = DocumentIndex.load(run)
    model = load(run)
    print(json.dumps({"run": str(run), "k": args.k, "hits": search_text(model, index, text, args.k)}, indent=2))


def cmd_report(args):
    from .report import write_report

    path = write_report(args.run, args.output or Path(args.run) / RESULTS / "report.html")
    print(f"wrote {path}")


