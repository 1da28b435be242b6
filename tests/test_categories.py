"""Category columns: text columns of a table become indicators of the values seen in training."""

import json

import numpy as np
import pandas as pd
import pytest

import aekit
from aekit.cli import main
from aekit.data.categories import by_column, encode_columns, looks_categorical
from aekit.errors import DataError


def network_table(n: int, prefix: str, seed: int) -> pd.DataFrame:
    """Four kinds of connection: the numbers say which, and so do protocol and service."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, 4, n)
    frame = pd.DataFrame(rng.normal(size=(n, 4)) * 0.3 + np.eye(4)[kind] * 3, columns=["bytes", "packets", "duration", "rate"])
    frame.insert(0, "id", [f"{prefix}{i:04d}" for i in range(n)])
    frame["protocol"] = np.array(["tcp", "udp", "icmp", "tcp"])[kind]
    frame["service"] = np.array(["http", "dns", "ping", "smtp"])[kind]
    return frame


def test_indicators_match_pandas_get_dummies_and_an_unseen_value_sets_none():
    cells = {"a": ["1", "2", "3", "4"], "colour": ["red", "blue", "red", "green"]}
    x, names, found = encode_columns(["a", "colour"], cells.__getitem__, None, lambda r, c: f"row {r}")
    expected = pd.get_dummies(pd.DataFrame(cells)["colour"], prefix="colour", prefix_sep="=", dtype=float)
    assert found == {"colour": ["blue", "green", "red"]} and names == ["a", *expected.columns]
    np.testing.assert_array_equal(x, np.column_stack([[1, 2, 3, 4], expected.to_numpy()]))
    new, _, _ = encode_columns(["a", "colour"], {"a": ["5"], "colour": ["purple"]}.__getitem__, found, lambda r, c: f"row {r}")
    assert new.tolist() == [[5, 0, 0, 0]]  # never an error: a value outside every indicator


def test_a_column_of_numbers_with_a_stray_word_is_refused_naming_the_cell():
    assert looks_categorical(["tcp", "udp", "1"]) and not looks_categorical(["1", "2", "n/a"]) and not looks_categorical(["", ""])
    with pytest.raises(DataError, match=r"row 2, column 'a': 'n/a' is not a number, in a column of numbers"):
        encode_columns(["a"], {"a": ["1", "2", "n/a"]}.__getitem__, None, lambda r, c: f"row {r}, column {c!r}")
    with pytest.raises(DataError, match="column 'id' holds 30 different words in 30 rows: ids or free text"):
        encode_columns(["id"], {"id": [f"P{i}" for i in range(30)]}.__getitem__, None, lambda r, c: "")
    with pytest.raises(DataError, match="row 0, column 'a' is empty"):
        encode_columns(["a"], {"a": [" ", "2", "3"]}.__getitem__, None, lambda r, c: f"row {r}, column {c!r}")


def test_shares_are_summed_by_column():
    shares = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    columns, summed = by_column(shares, ["a", "colour=blue", "colour=red", "b"], {"colour": ["blue", "red"]})
    assert columns == ["a", "colour", "b"]
    np.testing.assert_allclose(summed, [[0.1, 0.5, 0.4], [0.4, 0.5, 0.1]])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_load_dataset_learns_categories_and_encodes_new_rows_with_them(tmp_path, suffix):
    path, new_path = tmp_path / f"t{suffix}", tmp_path / f"n{suffix}"
    train, new = network_table(50, "t", 0), network_table(5, "n", 1)
    new.loc[0, "protocol"] = "gre"
    for frame, where in ((train, path), (new, new_path)):
        frame.to_csv(where, index=False) if suffix == ".csv" else frame.to_parquet(where)
    data = aekit.load_dataset(path, split="all", id_column="id", scaling=None)
    assert data.categories == {"protocol": sorted(set(train["protocol"])), "service": sorted(set(train["service"]))}
    assert data.columns[:4] == ["bytes", "packets", "duration", "rate"] and "protocol=tcp" in data.columns
    np.testing.assert_array_equal(data.x[:, data.columns.index("service=dns")].numpy(), (train["service"] == "dns").to_numpy())
    encoded = aekit.load_dataset(new_path, split="all", id_column="id", scaling=None, categories=data.categories)
    assert encoded.columns == data.columns
    protocol = [data.columns.index(f"protocol={v}") for v in data.categories["protocol"]]
    assert encoded.x[0, protocol].sum() == 0 and (encoded.x[1:, protocol].sum(1) == 1).all()


def test_cli_trains_on_category_columns_says_so_and_flags_contradictions_and_unseen_values(tmp_path, capsys):
    network_table(1500, "t", 0).to_csv(tmp_path / "train.csv", index=False)
    new = network_table(200, "n", 1)
    numbers_say = np.argmax(new[["bytes", "packets", "duration", "rate"]].to_numpy(), 1)
    new.loc[:4, "service"] = np.array(["dns", "ping", "smtp", "http"])[(numbers_say[:5] + 1) % 4]  # contradicts the numbers
    new.loc[5:7, "protocol"] = "gre"  # never seen in training
    new.to_csv(tmp_path / "new.csv", index=False)
    run = str(tmp_path / "run")
    assert main(["train", "--dataset", str(tmp_path / "train.csv"), "--id-column", "id", "--out", run, "--no-progress", "--quiet"]) == 0
    assert json.loads((tmp_path / "run" / "data.json").read_text())["categories"] == {"protocol": ["icmp", "tcp", "udp"], "service": ["dns", "http", "ping", "smtp"]}
    assert main(["train", "--dataset", str(tmp_path / "train.csv"), "--id-column", "id", "--epochs", "1", "--out", str(tmp_path / "said"), "--no-progress"]) == 0
    assert "category columns: protocol (3 values), service (4 values)" in capsys.readouterr().err
    assert main(["detect", run, "--dataset", str(tmp_path / "new.csv"), "-o", str(tmp_path / "scores.csv")]) == 0
    scores = pd.read_csv(tmp_path / "scores.csv")
    planted = scores["id"].isin([f"n{i:04d}" for i in range(8)])
    assert scores.loc[planted, "flagged"].all()
    assert scores.loc[planted, "score"].min() > scores.loc[~planted, "score"].quantile(0.95)
    tops = [json.loads(t)[0][0] for t in scores.loc[planted, "top_features"]]
    assert tops[:5] == ["service"] * 5 and tops[5:] == ["protocol"] * 3  # the column, not its indicator


def test_estimator_takes_a_frame_with_category_columns_and_saves_them(tmp_path):
    from aekit.sklearn import AutoencoderOutlierDetector

    train = network_table(1000, "t", 0).drop(columns="id")
    detector = AutoencoderOutlierDetector(random_state=0).fit(train)
    assert detector.categories_ == {"protocol": ["icmp", "tcp", "udp"], "service": ["dns", "http", "ping", "smtp"]}
    new = network_table(50, "n", 1).drop(columns="id")
    new.loc[:2, "protocol"] = "gre"
    scores = -detector.score_samples(new)
    assert scores[:3].min() > np.quantile(scores[3:], 0.9) and (detector.predict(new)[:3] == -1).all()
    detector.save(tmp_path / "d")
    np.testing.assert_array_equal(AutoencoderOutlierDetector.load(tmp_path / "d").score_samples(new), detector.score_samples(new))
    with pytest.raises(DataError, match="X has no column 'protocol', a category column"):
        detector.score_samples(new.drop(columns="protocol"))
