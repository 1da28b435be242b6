"""Documents: reading text, bags of words, the bow architecture, semantic hashing, retrieval and search."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest
import torch
from sklearn.feature_extraction.text import CountVectorizer, TfidfTransformer

import aekit
from aekit.apps.documents import hamming, tfidf
from aekit.cli import main
from aekit.data.text import TOKENS, as_bags
from aekit.errors import DataError
from aekit.losses import multinomial_nll

TOPICS = {
    "space": "orbit shuttle launch rocket nasa moon planet satellite astronaut telescope",
    "cars": "engine wheel brake tire driver motor gear clutch fuel highway",
    "food": "recipe flour sugar butter oven bread cheese pasta sauce garlic",
}


def corpus(root, per_class: int = 16, seed: int = 0):
    """A folder of text files, one sub-folder per topic, each document a few of its topic's words and some shared ones."""
    rng = np.random.default_rng(seed)
    for topic, words in TOPICS.items():
        (root / topic).mkdir(parents=True)
        for i in range(per_class):
            picked = rng.choice(words.split(), 6) .tolist() + rng.choice(["today", "people", "think", "really"], 2).tolist()
            (root / topic / f"{i:03d}.txt").write_text(" ".join(picked))
    return root


def test_a_folder_of_text_files_becomes_bags_of_words_with_classes_and_paths(tmp_path):
    corpus(tmp_path / "docs")
    (tmp_path / "docs" / "cars" / "latin.txt").write_bytes("caf\xe9 engine brake".encode("latin-1"))
    data = aekit.load_dataset(str(tmp_path / "docs"), split="all")
    assert data.is_text and data.classes == sorted(TOPICS) and len(data) == 49
    assert data.x.shape[1] == 2 and "cars/latin.txt" in data.ids and "café engine brake" in data.texts
    counts = CountVectorizer(vocabulary=data.vocabulary, **TOKENS).transform(data.texts).toarray()
    dense = np.zeros_like(counts)  # the bags hold exactly the counts
    for row, bag in enumerate(data.x.numpy()):
        np.add.at(dense[row], bag[0].astype(int), bag[1])
    np.testing.assert_array_equal(dense, counts)


def test_a_long_document_keeps_its_most_frequent_words():
    counts = CountVectorizer().fit_transform(["a1 a1 a1 b2 b2 c3 d4"])
    bags, cut = as_bags(counts, 2)
    assert cut == 1 and sorted(bags[0, 1].tolist()) == [2.0, 3.0]


def test_an_archive_with_its_own_train_and_test_folders_keeps_them(tmp_path):
    for part in ("train", "test"):
        corpus(tmp_path / f"news-{part}", per_class=4, seed=len(part))
    with tarfile.open(tmp_path / "news.tar.gz", "w:gz") as archive:
        for part in ("train", "test"):
            archive.add(tmp_path / f"news-{part}", arcname=f"news-{part}")
    train = aekit.load_dataset(str(tmp_path / "news.tar.gz"), split="train")
    test = aekit.load_dataset(str(tmp_path / "news.tar.gz"), split="test", vocabulary=train.vocabulary, bag_length=train.shape[1])
    assert len(train) == len(test) == 12 and all(i.startswith("news-test/") for i in test.ids)
    assert test.shape == train.shape


def test_a_csv_text_column_is_read_as_documents(tmp_path):
    (tmp_path / "d.csv").write_text("id,text,topic\na,orbit shuttle launch,space\nb,engine brake wheel,cars\nc,orbit nasa moon,space\n")
    data = aekit.load_dataset(str(tmp_path / "d.csv"), split="all", text_column="text", id_column="id", label_column="topic")
    assert data.is_text and data.ids == ["a", "b", "c"] and data.classes == ["cars", "space"]
    with pytest.raises(DataError, match="no column 'body' \\(the text column\\)"):
        aekit.load_dataset(str(tmp_path / "d.csv"), text_column="body")


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "a.txt").write_text("   \n"), "is empty"),
    (lambda d: (d / "a.txt").write_bytes(b"\x89PNG\x00\x00binary"), "not a text file"),
])
def test_bad_documents_are_refused_in_one_line(tmp_path, make, message):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.txt").write_text("orbit shuttle launch")
    make(folder)
    with pytest.raises(DataError, match=message):
        aekit.load_dataset(str(folder), split="all")


def test_an_empty_folder_holds_no_documents(tmp_path):
    with pytest.raises(DataError, match="holds no text documents"):
        aekit.load_dataset(str(tmp_path), split="all")


def test_the_multinomial_loss_is_the_cross_entropy_of_the_documents_words():
    logits = torch.randn(2, 5)
    bags = torch.tensor([[[0, 3, 0], [2.0, 1.0, 0.0]], [[4, 1, 2], [1.0, 1.0, 2.0]]])
    dense = torch.zeros(2, 5)
    for row in range(2):
        dense[row].index_add_(0, bags[row, 0].long(), bags[row, 1])
    expected = -(dense / dense.sum(1, keepdim=True) * torch.log_softmax(logits, 1)).sum(1)
    torch.testing.assert_close(multinomial_nll(logits, bags), expected)


def test_the_bow_input_layer_is_a_linear_layer_on_sklearns_tfidf_vectors(tmp_path):
    data = aekit.load_dataset(str(corpus(tmp_path / "docs")), split="all")
    model = aekit.get_model("hashing", architecture="bow", vocabulary=data.vocabulary, input_shape=data.shape, code_size=4, hidden=(6,)).eval()
    model.adapt(data.x)
    counts = CountVectorizer(vocabulary=data.vocabulary, **TOKENS).transform(data.texts)
    counts.data = np.log1p(counts.data)  # log(1 + tf) (sklearn's sublinear_tf is 1 + log tf), then its smoothed idf and L2 rows
    tfidf_vectors = TfidfTransformer().fit_transform(counts).toarray()
    layer = model.encoder[0]
    expected = torch.from_numpy(tfidf_vectors).float() @ layer.rows.weight + layer.bias
    torch.testing.assert_close(layer(model.scale(data.x)), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(tfidf(model, data.x).toarray(), tfidf_vectors, rtol=1e-5, atol=1e-6)
    assert model.output_shape == (len(data.vocabulary),) and model.config["loss"] == "multinomial"


def test_hashing_bits_are_the_codes_above_one_half_and_hamming_counts_differing_bits():
    model = aekit.get_model("hashing", input_shape=(12,), code_size=5, hidden=(8,)).eval()
    x = torch.rand(9, 12)
    assert torch.equal(model.binary_codes(x), model.encode(x) > 0.5)
    a, b = np.random.default_rng(0).random((4, 7)) > 0.5, np.random.default_rng(1).random((5, 7)) > 0.5
    np.testing.assert_array_equal(hamming(a, b), (a[:, None, :] != b[None, :, :]).sum(2))


def test_train_evaluate_search_and_encode_documents_from_the_command_line(tmp_path, capsys):
    train, test, run = corpus(tmp_path / "train"), corpus(tmp_path / "test", per_class=5, seed=1), tmp_path / "run"
    assert main(["train", "--dataset", str(train), "--split", "all", "--out", str(run), "--epochs", "30", "--quiet"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "hashing" and config["options"]["architecture"] == "bow"
    capsys.readouterr()
    assert main(["evaluate", str(run), "--dataset", str(test), "--retrieval", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"precision", "hamming_precision", "bits", "k"} <= set(result) and result["bits"] == 64 and result["k"] == 5
    assert result["precision"] > 0.6  # three topics with disjoint words: chance is 1/3
    assert main(["search", str(run), "--text", "rocket orbit nasa launch", "-k", "3"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert len(hits) == 3 and all(h["path"].startswith("space/") and h["class"] == "space" and h["snippet"] for h in hits)
    assert main(["encode", str(run), "--dataset", str(test), "-o", str(tmp_path / "codes.csv")]) == 0
    header, first = (tmp_path / "codes.csv").read_text().splitlines()[:2]
    assert header.startswith("id,bits,z0") and len(first.split(",")[1]) == 16  # 64 bits as 16 hex digits
    assert main(["embed", str(run), "--dataset", str(test), "-o", str(tmp_path / "map.png")]) == 0
    assert (tmp_path / "map.png").stat().st_size > 10_000
    assert main(["detect", str(run), "--dataset", str(test), "--normal-class", "space,cars", "-o", str(tmp_path / "scores.csv")]) == 0
    scores = (tmp_path / "scores.csv").read_text().splitlines()
    assert scores[0].startswith("id,score") and len(scores) == 16 and "food/000.txt" in (tmp_path / "scores.csv").read_text()
    assert main(["report", str(run), "-o", str(tmp_path / "report.html")]) == 0
    assert "roc auc" in (tmp_path / "report.html").read_text() and "knn accuracy" in (tmp_path / "report.html").read_text()
    assert main(["search", str(run), "--text", "the of and"]) == 2
    (run / "documents.json").unlink()  # a run killed before its index was written gets it when resumed
    assert main(["train", "--resume", str(run), "--epochs", "31", "--quiet"]) == 0
    assert main(["search", str(run), "--text", "rocket orbit", "-k", "1"]) == 0  # nothing but stop words: one line, exit 2
    assert "none of the query's words" in capsys.readouterr().err


def test_the_scikit_learn_transformer_takes_a_sparse_tfidf_matrix(tmp_path):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline

    from aekit.sklearn import AutoencoderTransformer

    data = aekit.load_dataset(str(corpus(tmp_path / "docs")), split="all")
    pipeline = make_pipeline(TfidfVectorizer(), AutoencoderTransformer(code_size=3, epochs=2, random_state=0))
    z = pipeline.fit_transform(data.texts)
    assert z.shape == (len(data), 3) and np.isfinite(z).all()
    assert pipeline.transform(["orbit launch"]).shape == (1, 3)


def test_bm25_weights_follow_the_okapi_formula_by_brute_force():
    from aekit.apps.documents import BM25_B, BM25_K1, bm25_weights

    counts = np.array([[2, 0, 1], [0, 3, 0], [1, 1, 0], [0, 0, 4]], dtype=np.float32)
    weights = bm25_weights(__import__("scipy").sparse.csr_matrix(counts)).toarray()
    n, length = len(counts), counts.sum(1)
    for d in range(n):
        for w in range(3):
            df = (counts[:, w] > 0).sum()
            idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
            tf = counts[d, w]
            expected = idf * tf * (BM25_K1 + 1) / (tf + BM25_K1 * (1 - BM25_B + BM25_B * length[d] / length.mean())) if tf else 0.0
            assert weights[d, w] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", [n for n in aekit.list_models() if not n.startswith("readme")])
def test_every_objective_builds_on_bow_or_says_why(name):
    from aekit.errors import ConfigError
    from aekit.registry import model_class

    words = [f"w{i}" for i in range(30)]
    bags = torch.zeros(6, 2, 5)
    bags[:, 0], bags[:, 1] = torch.randint(0, 30, (6, 5)).float(), torch.randint(0, 3, (6, 5)).float()
    options = {"vqvae": {"codebook_size": 8, "prior_width": 16, "positions": 4}}.get(name, {})
    allowed = model_class(name).architectures
    if name == "recirculation" or (allowed is not None and "bow" not in allowed):
        with pytest.raises(ConfigError):
            aekit.get_model(name, architecture="bow", vocabulary=words, input_shape=(2, 5), code_size=3, hidden=(8,), **options)
        return
    model = aekit.get_model(name, architecture="bow", vocabulary=words, input_shape=(2, 5), code_size=3, hidden=(8,), **options)
    model.adapt(bags)
    out = model.train()(bags)
    assert out.x_hat.shape == (6, 30) and torch.isfinite(out.loss)
    sum(out.group_losses.values(), out.loss).backward()
    assert model.eval().encode(bags).shape[0] == 6


def test_20news_is_read_offline_from_the_data_folder_and_a_failed_download_says_where_to_put_it(tmp_path, monkeypatch):
    import dataclasses

    from aekit.data import sources
    from aekit.errors import DownloadError

    for part in ("train", "test"):
        corpus(tmp_path / "src" / f"20news-bydate-{part}", per_class=3, seed=len(part))
    (tmp_path / "data" / "20news").mkdir(parents=True)
    with tarfile.open(tmp_path / "data" / "20news" / "20news-bydate.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "src", arcname=".")
    test = aekit.load_dataset("20news", split="test", data_dir=tmp_path / "data")
    assert len(test) == 9 and test.classes == sorted(TOPICS)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AEKIT_DATA", raising=False)
    wrong = dataclasses.replace(sources.NEWSGROUPS, url=(tmp_path / "data" / "20news" / "20news-bydate.tar.gz").as_uri())  # served, but not the published bytes
    monkeypatch.setitem(aekit.data.NAMED, "20news", wrong.read)
    with pytest.raises(DownloadError, match="checksum mismatch.*Put it in"):
        aekit.load_dataset("20news", data_dir=tmp_path / "empty")
    assert not list((tmp_path / "empty").rglob("*.tar.gz"))  # nothing half-written


def test_word_dropout_keeps_a_share_of_each_documents_words_drawn_from_one_minus_the_rate_to_one():
    from aekit.models.documents import BagInput

    layer = BagInput(50, 3, word_dropout=0.6)
    torch.nn.init.ones_(layer.rows.weight)
    torch.nn.init.zeros_(layer.bias)
    bags = torch.stack([torch.arange(40.0).repeat(2000, 1), torch.ones(2000, 40)], dim=1)  # 2,000 documents of 40 words, count 1
    seen = []
    layer.rows.register_forward_hook(lambda module, args, kwargs, out: seen.append(kwargs["per_sample_weights"]), with_kwargs=True)  # the weights after dropout
    layer.train()(bags)
    kept = (seen[-1] > 0).float().mean(1)
    # a keep rate p ~ U(0.4, 1) per document, then 40 Bernoulli(p) draws: mean 0.7, standard deviation
    # sqrt(Var p + E[p (1 - p)] / 40) = 0.187 (one rate for all documents would give 0.072)
    assert abs(kept.mean().item() - 0.7) < 0.01 and 0.17 < kept.std().item() < 0.2
    layer.eval()(bags)
    assert bool((seen[-1] > 0).all())  # evaluation reads every word
