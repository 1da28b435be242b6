"""The application commands' part of the ``aekit`` parser (no PyTorch imported): each command's function, in
``aekit.apps.commands``, loads a fitted run and calls one application."""

from __future__ import annotations

import argparse

from .._lazy import later


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 0,1,2, got {text!r}") from None


def _data_args(p: argparse.ArgumentParser, split_help: str, names) -> None:
    p.add_argument("run", help="run folder (or saved model)")
    p.add_argument("--dataset", help="data set name or path (default: the run's own)")
    p.add_argument("--split", choices=["train", "test", "all"], help=split_help)
    p.add_argument("--data-dir", help="folder holding data files")
    p.add_argument("--id-column", help="CSV column of row ids, kept out of the features (default: the run's)")
    p.add_argument("--ignore-columns", type=names, help="CSV columns to drop (default: the run's)")


def _count(most: int):
    """An argparse type: a whole number from 1 to ``most`` (how many samples, points, images)."""

    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not 1 <= value <= most:
            raise argparse.ArgumentTypeError(f"expected 1 to {most:,}, got {value:,}")
        return value

    return count


def _positive(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number above 0, got {text}")
    return value


def add_commands(commands, sizes, option, names) -> None:
    """Add the application sub-commands to the ``aekit`` parser."""
    p = commands.add_parser("embed", help="2-D map of the codes beside PCA, with trustworthiness and k-NN accuracy", description="Encode a data set, project the codes to 2-D, plot them beside PCA's projection of the inputs.")
    _data_args(p, "which part (default: test)", names)
    p.add_argument("--method", choices=["pca", "tsne", "umap"], default="pca", help="projection of codes with more than 2 units (default: pca)")
    p.add_argument("--max-points", type=_count(1_000_000), default=3000, help="samples drawn for the map (default: 3000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample drawn and of t-SNE/UMAP (default: 0)")
    p.add_argument("-o", "--output", help="the picture to write (default: RUN/results/embed-K.png, one per call)")
    p.set_defaults(func=later("aekit.apps.commands", "cmd_embed"))

    p = commands.add_parser("denoise", help="corrupt test data, reconstruct it, report PSNR", description="Corrupt clean data, reconstruct it, write a noisy/denoised/clean grid and the PSNR of both.")
    _data_args(p, "which part (default: test)", names)
    p.add_argument("--noise", default="gaussian:0.5", help="gaussian:SIGMA, masking:FRACTION or salt_and_pepper:FRACTION (default: gaussian:0.5)")
    p.add_argument("-n", type=_count(10_000), default=10, help="images in the grid (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruption (default: 0)")
    p.add_argument("-o", "--output", help="the picture to write (default: RUN/results/denoise-K.png, one per call)")
    p.set_defaults(func=later("aekit.apps.commands", "cmd_denoise"))

    p = commands.add_parser("detect", help="anomaly scores, saved threshold, flagged rows by id, ROC AUC", description="Score every sample (the model's anomaly score: reconstruction error, code density, minus the ELBO for a VAE), flag those whose conformal p-value against the run's calibration scores is at most --false-alarm-rate, and evaluate when labels exist. -o scores.csv writes one line per sample (id, score, pvalue, flagged, top_features); -o scores.png the histogram.")
    _data_args(p, "which part to score (default: test for the run's own data, all for another file)", names)
    p.add_argument("--normal-class", type=names, help="the normal class(es), by label or name, comma-separated (others are anomalies), e.g. 3 or good or sci.space,sci.med; by default 0/1 labels are read as 1 = anomaly")
    p.add_argument("--false-alarm-rate", type=float, default=0.05, help="share of normal samples that may be flagged: the saved threshold (default: 0.05)")
    p.add_argument("--contamination", type=float, help="instead, flag this share of the reference scores")
    p.add_argument("--percentile", type=float, help="instead, flag scores above this percentile of the reference scores")
    p.add_argument("--reference-split", choices=["train", "test", "all"], help="with --contamination/--percentile: the split whose scores set the threshold (default: the scored data)")
    p.add_argument("-o", "--output", help="scores.csv (one line per sample) or scores.png (histogram) (default: RUN/results/detect-K.png, one per call)")
    p.add_argument("--masks", metavar="DIR", help="images: defect masks (MVTec AD's ground_truth/KIND/STEM_mask.png, or STEM.png beside each image): adds pixel_roc_auc and pro")
    p.add_argument("--maps", metavar="DIR", help="images: write each image's anomaly map over it (PNG, flagged regions outlined) here (default, for the draem model or with --masks: RUN/results/detect-K-maps)")
    p.add_argument("--maps-npy", action="store_true", help="with the PNGs, each map as a .npy array in the image's pixel grid")
    p.set_defaults(func=later("aekit.apps.commands", "cmd_detect"))

    p = commands.add_parser("protocol", help="run an anomaly-detection protocol (MNIST one-class, ODDS)", description="Train and score detectors under a standard protocol: mnist-one-class (train on one digit, test on all) or odds (stratified 60/40 split, several seeds).")
    p.add_argument("name", choices=["mnist-one-class", "odds"], help="the protocol")
    p.add_argument("--model", default="ae", help="registered model (default: ae)")
    p.add_argument("--code-size", type=int, help="code size (default: the model's)")
    p.add_argument("--hidden", type=sizes, help="hidden sizes, e.g. 256,128 (default: the model's)")
    p.add_argument("--option", type=option, action="append", metavar="KEY=VALUE", help="any other model option (repeatable)")
    p.add_argument("--epochs", type=int, default=20, help="epochs per detector (default: 20)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: 1e-3)")
    p.add_argument("--batch-size", type=int, default=128, help="samples per step (default: 128)")
    p.add_argument("--digits", type=_ints, default=list(range(10)), help="mnist-one-class: the normal digits to run (default: 0-9)")
    p.add_argument("--sets", type=lambda t: t.replace(",", " ").split(), default=["cardio", "ionosphere", "letter", "mnist", "pima", "satellite"], help="odds: the sets to run (default: cardio,ionosphere,letter,mnist,pima,satellite)")
    p.add_argument("--seeds", type=int, default=10, help="odds: seeds (splits) per set (default: 10)")
    p.add_argument("--data-dir", help="folder holding data files (default: $AEKIT_DATA, then ~/.cache/aekit)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-o", "--output", help="also write the numbers to this JSON file")
    p.set_defaults(func=later("aekit.apps.commands", "cmd_protocol"))

    p = commands.add_parser("sample", help="decode samples from the prior (VAE)", description="Decode samples drawn from the prior N(0, I) of a VAE into an image grid.")
    p.add_argument("run", help="run folder of a VAE")
    p.add_argument("-n", type=_count(10_000), default=64, help="samples (default: 64; at most 10,000)")
    p.add_argument("--per-row", type=_count(1_000), default=8, help="samples per row of the grid (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the codes drawn (default: 0)")
    p.add_argument("-o", "--output", help="the picture to write (default: RUN/results/sample-K.png, one per call)")
    p.set_defaults(func=later("aekit.apps.commands", "cmd_sample"))

    p = commands.add_parser("interpolate", help="decode a line in code space between two samples", description="Decode points on the straight line between the codes of samples A and B.")
    _data_args(p, "which part A and B index (default: test)", names)
    p.add_argument("a", type=int, help="index of the first sample")
    p.add_argument("b", type=int, help="index of the second sample")
    p.add_argument("--steps", type=_count(1_000), default=10, help="points on the line, ends included (default: 10)")
    p.add_argument("-o", "--output", help="the picture to write (default: RUN/results/interpolate-K.png, one per call)")
    p.set_defaults(func=later("aekit.apps.commands", "cmd_interpolate"))

    p = commands.add_parser("traverse", help="vary one code unit at a time (latent traversal)", description="Vary each code unit over mean +- span standard deviations around one sample's code; one row per unit.")
    _data_args(p, "which part (default: test)", names)
    p.add_argument("--index", type=int, default=0, help="the sample whose code is traversed")
    p.add_argument("--dims", type=_ints, help="code units to vary (default: the first 10)")
    p.add_argument("--span", type=_positive, default=2.5, help="standard deviations each side of the sample's code (default: 2.5)")
    p.add_argument("--steps", type=_count(1_000), default=9, help="images per unit (default: 9)")
    p.add_argument("-o", "--output", help="the picture to write (default: RUN/results/traverse-K.png, one per call)")
    p.set_defaults(func=later("aekit.apps.commands", "cmd_traverse"))

    p = commands.add_parser("probe", help="logistic regression on codes vs raw inputs vs PCA", description="Fit logistic regression on the train split's codes, raw inputs and PCA codes of the same size; report test accuracy.")
    p.add_argument("run", help="run folder")
    p.add_argument("--dataset", help="labelled data set (default: the run's own)")
    p.add_argument("--data-dir", help="folder holding data files (default: $AEKIT_DATA, then ~/.cache/aekit)")
    p.set_defaults(func=later("aekit.apps.commands", "cmd_probe"))

    p = commands.add_parser("index", help="index a data set's codes for retrieval", description="Encode a collection and save a nearest-neighbour index of its codes (exact, or FAISS IVF for large sets).")
    _data_args(p, "which part to index (default: train)", names)
    p.add_argument("--metric", choices=["cosine", "l2"], default="cosine", help="similarity of codes (default: cosine)")
    p.add_argument("--approximate", choices=["auto", "yes", "no"], default="auto", help="FAISS IVF index: auto = from 50,000 codes on (default: auto)")
    p.add_argument("-o", "--output", default="index", help="the index folder to write (default: index)")
    p.set_defaults(func=later("aekit.apps.commands", "cmd_index"))

    p = commands.add_parser("search", help="nearest neighbours of queries in an index, or a run's documents nearest a text", description="Find the k nearest indexed samples of query samples; precision@k by label over all queries. With --text or --file: the documents of RUN (a run trained on documents) nearest the query's words, by Hamming distance of their bits, as JSON (path, class, distance, snippet).")
    p.add_argument("index", help="folder written by aekit index; with --text/--file, a run folder trained on documents")
    p.add_argument("--text", help="a free-text query (documents)")
    p.add_argument("--file", help="a text file as the query (documents)")
    p.add_argument("query", nargs="?", help="query data set (default: the run's own)")
    p.add_argument("--split", choices=["train", "test", "all"], help="which part the queries come from (default: test)")
    p.add_argument("--data-dir", help="folder holding data files (default: the index's)")
    p.add_argument("--queries", type=_ints, help="query indices shown in the grid (default: 0-4)")
    p.add_argument("-k", type=_count(100_000), default=10, help="neighbours per query (default: 10)")
    p.add_argument("-o", "--output", help="result grid, image data (default: RUN/results/search-K.png, one per call)")
    p.set_defaults(func=later("aekit.apps.commands", "cmd_search"))

    p = commands.add_parser("report", help="one self-contained HTML page about a run", description="Write an HTML report (images embedded): curves, reconstructions, latent map, samples, application results.")
    p.add_argument("run", help="run folder")
    p.add_argument("-o", "--output", help="the page to write (default: RUN/results/report.html)")
    p.set_defaults(func=later("aekit.apps.commands", "cmd_report"))

