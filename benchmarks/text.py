"""Documents on 20 Newsgroups: semantic hashing against TF-IDF and LSA, free-text search, off-topic detection.

Retrieval as the documents issue measures it: each of the 7,532 test posts queries the 11,314 training posts,
relevant = same newsgroup, precision@100. aekit: `aekit train --dataset 20news --code-size B` with every
other setting its default, then `aekit evaluate RUN --dataset 20news --split test --retrieval 100` (real codes
by cosine, bits by Hamming distance). Baselines computed here on the same split: TF-IDF cosine over 10,000
words, LSA (truncated SVD of TF-IDF) with B dimensions by cosine, and LSA binarised at each unit's median,
B bits, by Hamming distance. Also: free-text search (the first 400 characters of 300 test posts, share of the
top 5 hits in the post's newsgroup) and off-topic detection (trained on 10 newsgroups, every test post scored;
ROC AUC against the distance to the nearest training post in TF-IDF space). Writes results/text.md.

    python benchmarks/text.py [--bits 8,16,32,64,128] [--choose]

--choose adds how the defaults were chosen: settings compared on a validation split of the training posts
(80% index, 20% queries), never on the test posts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_files
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import normalize

import aekit
from aekit.apps.common import encode
from aekit.apps.detect import anomaly_scores
from aekit.apps.documents import DocumentIndex, _unit, binary_codes, hamming, search_text, text_bags, word_counts
from aekit.defaults import DOCUMENT_BATCH, DOCUMENT_BITS, DOCUMENT_STEPS, epochs_for
from common import DATA_DIR, machine, write

K = 100
AEKIT = str(Path(sys.executable).with_name("aekit"))
INLIERS = 10  # off-topic detection: the first 10 newsgroups (alphabetically) are the normal topics


def precision(similarity: np.ndarray, train_labels: np.ndarray, test_labels: np.ndarray, k: int = K) -> float:
    hits = []
    for start in range(0, len(similarity), 500):
        top = np.argpartition(-similarity[start : start + 500], k - 1, axis=1)[:, :k]
        hits.append((train_labels[top] == test_labels[start : start + 500, None]).mean(1))
    return float(np.concatenate(hits).mean())


def timed_child(command: list[str]) -> tuple[float, float]:
    """Run ``command``; its wall seconds and peak resident memory (GiB)."""
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise SystemExit(f"{' '.join(command)} failed: {process.stderr.read().decode()[-500:]}")
    return time.perf_counter() - began, usage.ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bits", default="8,16,32,64,128")
    parser.add_argument("--choose", action="store_true", help="also compare settings on a validation split of the training posts")
    args = parser.parse_args()
    bits_list = [int(b) for b in args.bits.split(",")]
    work = Path(tempfile.mkdtemp())
    with tarfile.open(DATA_DIR / "20news" / "20news-bydate.tar.gz") as archive:
        archive.extractall(work, filter="data")
    train_dir, test_dir = work / "20news-bydate-train", work / "20news-bydate-test"
    train, test = load_files(train_dir, encoding="latin-1"), load_files(test_dir, encoding="latin-1")
    ytr, yte = np.asarray(train.target_names)[train.target], np.asarray(test.target_names)[test.target]
    vectorizer = TfidfVectorizer(max_features=10000, stop_words="english", sublinear_tf=True, min_df=2)
    xtr, xte = vectorizer.fit_transform(train.data), vectorizer.transform(test.data)
    tfidf = precision((xte @ xtr.T).toarray(), ytr, yte)

    rows, runs = [], {}
    for bits in bits_list:
        svd = TruncatedSVD(bits, random_state=0).fit(xtr)
        ztr, zte = svd.transform(xtr), svd.transform(xte)
        lsa = precision(normalize(zte) @ normalize(ztr).T, ytr, yte)
        median = np.median(ztr, 0)
        lsa_bits = precision(-hamming(zte > median, ztr > median).astype(np.float32), ytr, yte)
        run = work / f"run-{bits}"
        seconds, memory = timed_child([AEKIT, "train", "--dataset", str(train_dir), "--split", "all", "--code-size", str(bits), "--out", str(run), "--quiet"])
        done = subprocess.run([AEKIT, "evaluate", str(run), "--dataset", str(test_dir), "--retrieval", str(K)], capture_output=True, text=True, check=True)
        result = json.loads(done.stdout)
        runs[bits] = run
        rows.append(f"| {bits} | **{result['hamming_precision']:.3f}** | {lsa_bits:.3f} | **{result['precision']:.3f}** | {lsa:.3f} | {seconds / 60:.1f} | {memory:.1f} |")
        print(rows[-1], flush=True)

    chosen = choose(train_dir) if args.choose else []
    subprocess.run([AEKIT, "embed", str(runs.get(64, runs[max(runs)])), "--dataset", str(test_dir), "--method", "tsne", "-o", str(Path(__file__).parent / "results" / "text_map.png")], capture_output=True, check=True)
    search = short_queries(runs[64] if 64 in runs else runs[bits_list[-1]], test, xtr, vectorizer, ytr)
    detection = off_topic(train_dir, test_dir, work, xtr, xte, train, test)
    lines = [
        "# Documents: 20 Newsgroups",
        "",
        f"`python benchmarks/text.py`; {machine()}.",
        "",
        "## Retrieval, precision@100",
        "",
        f"Each of the 7,532 test posts queries the 11,314 training posts (relevant = same newsgroup). TF-IDF cosine over 10,000 words: **{tfidf:.3f}** (any number of bits).",
        "aekit: `aekit train --dataset 20news-bydate-train --split all --code-size B` (model `hashing` on the `bow` architecture, every other setting its default), "
        "`aekit evaluate RUN --dataset 20news-bydate-test --retrieval 100`.",
        "",
        "| bits / dimensions | aekit bits, Hamming | LSA bits (median), Hamming | aekit codes, cosine | LSA, cosine | training minutes | peak memory GiB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "Published unsupervised hashing models on this corpus, for orientation only (their own preprocessing and splits, not run here):",
        "VDSH (Chaidaroon & Fang 2017) and NASH (Shen et al. 2018) report precision@100 of roughly 0.40-0.55 at 32-64 bits.",
        "",
        f"The test posts' {64 if 64 in runs else max(runs)}-bit codes mapped to 2-D by t-SNE beside LSA's 2-D map (`aekit embed RUN --dataset 20news-bydate-test --method tsne`): [text_map.png](text_map.png).",
        "",
        "## Free-text search",
        "",
        "`aekit search RUN --text` with the first 400 characters of 300 test posts (mostly their headers: sender, subject, organisation); "
        "share of the top 5 hits in the post's newsgroup. aekit ranks by `1 - hamming / bits` plus the query's BM25 score over the best one's.",
        "",
        "| ranking | top-5 hits in the query's newsgroup |",
        "| --- | --- |",
        *(f"| {name} | {value:.3f} |" for name, value in search.items()),
        "",
        *chosen,
        "## Off-topic detection",
        "",
        f"Trained on the training posts of the first {INLIERS} newsgroups ({', '.join(train.target_names[:INLIERS])}); every test post scored, "
        "the other 10 newsgroups' posts are the anomalies.",
        "",
        "| detector | ROC AUC |",
        "| --- | --- |",
        *(f"| {name} | {value:.3f} |" for name, value in detection.items()),
    ]
    write("text.md", lines)


FIRST = {"hidden": (500, 500), "word_dropout": 0.0}  # the first candidate: two hidden layers of 500, no word dropout
CANDIDATES = {  # label: model options, and the optimiser steps (code noise 1 unless named)
    "500-500, no word dropout": (FIRST, DOCUMENT_STEPS),
    "500-500, code noise 2": ({**FIRST, "code_noise": 2.0}, DOCUMENT_STEPS),
    "500-500, 5,000 steps": (FIRST, 2 * DOCUMENT_STEPS),
    "500-500, word dropout 0.5": ({**FIRST, "word_dropout": 0.5}, DOCUMENT_STEPS),
    "1000, no word dropout": ({"hidden": (1000,), "word_dropout": 0.0}, DOCUMENT_STEPS),
    "1000, 5,000 steps": ({"hidden": (1000,), "word_dropout": 0.0}, 2 * DOCUMENT_STEPS),
    "1000, word dropout 0.5 (the defaults)": ({"hidden": (1000,), "word_dropout": 0.5}, DOCUMENT_STEPS),
}


def choose(train_dir: Path) -> list[str]:
    """The candidates, trained on 80% of the training posts, queried by the other 20%: precision@100 by bits and by codes."""
    index = aekit.load_dataset(str(train_dir), split="train")
    queries = aekit.load_dataset(str(train_dir), split="test", vocabulary=index.vocabulary, bag_length=index.shape[1])
    labels, wanted = np.asarray(index.classes)[index.y.numpy()], np.asarray(queries.classes)[queries.y.numpy()]
    rows = []
    for label, (options, steps) in CANDIDATES.items():
        torch.manual_seed(0)
        model = aekit.get_model("hashing", architecture="bow", vocabulary=index.vocabulary, input_shape=index.shape, code_size=DOCUMENT_BITS, **options)
        aekit.fit(model, index, epochs=epochs_for(steps, len(index), DOCUMENT_BATCH), batch_size=DOCUMENT_BATCH, progress=False)
        model.eval()
        codes = encode(model, index.x)
        center = codes.mean(0)
        by_codes = precision(_unit(encode(model, queries.x) - center) @ _unit(codes - center).T, labels, wanted)
        by_bits = precision(-hamming(model.binary_codes(queries.x).numpy(), model.binary_codes(index.x).numpy()).astype(np.float32), labels, wanted)
        rows.append(f"| {label} | {by_bits:.3f} | {by_codes:.3f} |")
        print(rows[-1], flush=True)
    return [
        "## Choosing the defaults",
        "",
        f"64 bits; {len(index):,} training posts indexed, the other {len(queries):,} as queries (the test posts are never used); precision@100.",
        "",
        "| setting | bits, Hamming | codes, cosine |",
        "| --- | --- | --- |",
        *rows,
        "",
    ]


def short_queries(run: Path, test, xtr, vectorizer, ytr: np.ndarray, n: int = 300) -> dict[str, float]:
    model, index = aekit.load(run).eval(), DocumentIndex.load(run)
    picked = np.random.default_rng(1).choice(len(test.data), n, replace=False)
    texts = [test.data[i][:400] for i in picked]
    wanted = np.asarray(test.target_names)[test.target[picked]]
    labels = np.asarray(index.classes)
    hybrid = np.mean([[hit["class"] == want for hit in search_text(model, index, text, 5)] for text, want in zip(texts, wanted)])
    bags = text_bags(model, texts)
    with torch.no_grad():
        codes = _unit(encode(model, bags) - index.center) @ _unit(index.codes - index.center).T
    by_bits = -hamming(binary_codes(model, bags, index.thresholds), index.bits) + 1e-3 * codes  # ties broken by the codes
    by_tfidf = (vectorizer.transform(texts) @ xtr.T).toarray()
    by_bm25 = (index.words @ (word_counts(bags, index.words.shape[1]) > 0).T.astype(np.float32)).T.toarray()
    share = lambda similarity, names: float((names[np.argsort(-similarity, 1)[:, :5]] == wanted[:, None]).mean())  # noqa: E731
    return {"aekit search (bits + BM25)": float(hybrid), "BM25 alone (the index's word weights)": share(by_bm25, labels), "TF-IDF cosine": share(by_tfidf, ytr), "aekit bits alone": share(by_bits, labels), "aekit codes alone, cosine": share(codes, labels)}


def off_topic(train_dir: Path, test_dir: Path, work: Path, xtr, xte, train, test) -> dict[str, float]:
    normal = train.target_names[:INLIERS]
    subset = work / "inliers"
    subset.mkdir()
    for name in normal:
        shutil.copytree(train_dir / name, subset / name)
    run = work / "run-inliers"
    subprocess.run([AEKIT, "train", "--dataset", str(subset), "--split", "all", "--out", str(run), "--quiet"], check=True)
    model = aekit.load(run).eval()
    queries = aekit.load_dataset(str(test_dir), split="all", vocabulary=model.architecture.words, bag_length=model.input_shape[1])
    anomalous = ~np.isin(np.asarray(queries.classes)[queries.y.numpy()], normal)
    inliers = np.isin(np.asarray(train.target_names)[train.target], normal)
    nearest = 1 - (xte @ xtr[inliers].T).max(axis=1).toarray().ravel()  # TF-IDF + nearest neighbour
    truth = ~np.isin(np.asarray(test.target_names)[test.target], normal)
    return {"aekit (hashing on bow, multinomial reconstruction loss)": float(roc_auc_score(anomalous, anomaly_scores(model, queries.x))),
            "TF-IDF, cosine distance to the nearest training post": float(roc_auc_score(truth, nearest))}


if __name__ == "__main__":
    main()
