"""load_dataset: named sources, lookup order, downloads, the user's own files."""

from __future__ import annotations

import gzip
import hashlib
import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import loadmat

import aekit
from aekit.data import write_idx
from aekit.data.dataset import fixed_split
from aekit.data.download import download, md5sum
from aekit.data.sources import IdxSet
from aekit.errors import DataError, DownloadError


def _fake_mnist(folder, n_train=6, n_test=4, value=7):
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", np.full((n, 28, 28), value, np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8) % 10)


def test_digits_splits_are_disjoint_and_cover_everything():
    train, test, everything = (aekit.load_dataset("digits", split=s) for s in ("train", "test", "all"))
    assert len(train) + len(test) == len(everything) == 1797
    assert train.shape == (1, 8, 8) and float(everything.x.max()) == 1.0
    # the same rows, whichever call: the split is fixed
    np.testing.assert_array_equal(train.x.numpy(), everything.x.numpy()[fixed_split(1797, "train")])
    assert not set(fixed_split(1797, "train")) & set(fixed_split(1797, "test"))


def test_lookup_order_data_dir_then_env_then_cache(tmp_path, monkeypatch):
    _fake_mnist(tmp_path / "arg" / "mnist", value=10)
    _fake_mnist(tmp_path / "env" / "mnist", value=20)
    _fake_mnist(tmp_path / "home" / ".cache" / "aekit" / "mnist", value=30)
    monkeypatch.setenv("AEKIT_DATA", str(tmp_path / "env"))
    level = lambda **kw: round(float(aekit.load_dataset("mnist", download=False, **kw).x[0, 0, 0, 0]) * 255)  # noqa: E731
    assert level(data_dir=tmp_path / "arg") == 10
    assert level() == 20
    monkeypatch.delenv("AEKIT_DATA")
    assert level() == 30


def test_files_directly_in_data_dir_are_found(tmp_path):
    _fake_mnist(tmp_path)  # no mnist/ sub-folder
    assert len(aekit.load_dataset("mnist", split="test", data_dir=tmp_path, download=False)) == 4


def test_missing_files_offline_give_one_clear_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(DownloadError, match=r"Put the mnist IDX files .* in .*data"):
        aekit.load_dataset("mnist", data_dir=tmp_path / "data")
    with pytest.raises(DataError, match="not found"):
        aekit.load_dataset("fashion-mnist", data_dir=tmp_path / "data", download=False)


def _mirror(tmp_path):
    """A local mirror (file:// URLs) of a tiny IDX set, and the IdxSet that points at it."""
    mirror = tmp_path / "mirror"
    _fake_mnist(tmp_path / "plain")
    mirror.mkdir()
    md5 = {}
    for path in (tmp_path / "plain").iterdir():
        target = mirror / (path.name + ".gz")
        target.write_bytes(gzip.compress(path.read_bytes()))
        md5[target.name] = hashlib.md5(target.read_bytes()).hexdigest()
    return IdxSet("tiny", (mirror.as_uri() + "/",), md5, tuple("0123456789"))


def test_download_verifies_and_places_files(tmp_path):
    tiny = _mirror(tmp_path)
    raw = tiny.read("test", [tmp_path / "cache"])
    assert raw.x.shape == (4, 1, 28, 28)
    assert sorted(p.name for p in (tmp_path / "cache" / "tiny").iterdir()) == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_download_with_wrong_checksum_leaves_nothing(tmp_path):
    tiny = _mirror(tmp_path)
    source = tmp_path / "mirror" / "t10k-labels-idx1-ubyte.gz"
    dest = tmp_path / "out" / source.name
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download([source.as_uri()], dest, md5="0" * 32)
    assert not dest.exists() and not list(dest.parent.iterdir())
    assert download([(tmp_path / "nope").as_uri(), source.as_uri()], dest, tiny.md5[source.name]) == dest
    assert md5sum(dest) == tiny.md5[source.name]


def test_odds_sets_load_with_labels_and_minmax_scaling(shared_data):
    data = aekit.load_dataset("odds:cardio", split="all", data_dir=shared_data)
    assert data.shape == (21,) and len(data) == 1831 and int(data.y.sum()) == 176
    assert float(data.x.min()) == 0.0 and float(data.x.max()) == 1.0
    X = loadmat(shared_data / "odds" / "cardio.mat")["X"]  # independent: straight from scipy
    expected = (X - X.min(0)) / np.where(X.max(0) > X.min(0), X.max(0) - X.min(0), 1)
    np.testing.assert_allclose(data.x.numpy(), expected, atol=1e-6)


def test_test_split_is_scaled_with_training_statistics(shared_data):
    train = aekit.load_dataset("odds:pima", split="train", data_dir=shared_data)
    test = aekit.load_dataset("odds:pima", split="test", data_dir=shared_data)
    raw = aekit.load_dataset("odds:pima", split="all", data_dir=shared_data, scaling=None).x.numpy()
    expected = train.scaling.apply(raw[fixed_split(len(raw), "test")])
    np.testing.assert_allclose(test.x.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(train.scaling.low, raw[fixed_split(len(raw), "train")].min(0))


def test_unknown_odds_set_and_unknown_name(shared_data):
    with pytest.raises(DataError, match="cardio2.mat"):
        aekit.load_dataset("odds:cardio2", data_dir=shared_data)
    with pytest.raises(DataError, match="Did you mean 'mnist'"):
        aekit.load_dataset("mnsit")
    with pytest.raises(DataError, match="unknown split"):
        aekit.load_dataset("digits", split="val")


def test_csv_with_header_labels_and_bad_cells(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("a,b,label\n1,2,cat\n3,4,dog\n5,6,cat\n7,8,dog\n9,10,cat\n")
    data = aekit.load_dataset(path, split="all", scaling=None)
    np.testing.assert_array_equal(data.x.numpy(), [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]])
    assert data.y.tolist() == [0, 1, 0, 1, 0] and data.classes == ["cat", "dog"]
    as_feature = aekit.load_dataset(path, split="all", scaling=None, label_column=0)  # then 'label' is a category column
    assert as_feature.categories == {"label": ["cat", "dog"]} and as_feature.columns == ["b", "label=cat", "label=dog"]
    assert as_feature.x[:, 1:].tolist() == [[1, 0], [0, 1], [1, 0], [0, 1], [1, 0]]
    path.write_text("a,b,c\n1,2,0\n3,4,1\n")
    by_index = aekit.load_dataset(path, split="all", scaling=None, label_column=0)
    assert by_index.y.tolist() == [1, 3] and by_index.x.tolist() == [[2, 0], [4, 1]]

    path.write_text("a,b\n1,2\n3,x4\n")
    with pytest.raises(DataError, match=r"line 3, column 'b': 'x4' is not a number"):
        aekit.load_dataset(path)
    path.write_text("1,2\n3\n")
    with pytest.raises(DataError, match="line 2: 1 cells"):
        aekit.load_dataset(path)
    path.write_text("a,b\n1,nan\n2,3\n")
    with pytest.raises(DataError, match="line 2, column 'b' holds nan"):
        aekit.load_dataset(path)
    path.write_text("a,b\n1,2\n2,-1e39\n")  # finite in float64, beyond float32: would train to inf
    with pytest.raises(DataError, match="line 3, column 'b': -1e\\+39 is beyond what 32-bit floats hold"):
        aekit.load_dataset(path)
    path.write_text("")
    with pytest.raises(DataError, match="empty"):
        aekit.load_dataset(path)


def test_csv_without_header(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("\n".join(f"{i},{2 * i}" for i in range(10)))
    data = aekit.load_dataset(path, split="all")
    assert data.shape == (2,) and data.y is None
    np.testing.assert_allclose(data.x[:, 0].numpy(), np.arange(10) / 9, rtol=1e-6)


def test_npy_and_npz(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(10, 1, 5, 5), dtype=np.uint8)
    np.save(tmp_path / "img.npy", images)
    data = aekit.load_dataset(tmp_path / "img.npy", split="all")
    np.testing.assert_allclose(data.x.numpy(), images / 255.0, rtol=1e-6)
    assert data.shape == (1, 5, 5)

    table = np.random.default_rng(1).normal(size=(20, 3))
    np.savez(tmp_path / "t.npz", x=table, y=np.arange(20) % 2)
    data = aekit.load_dataset(tmp_path / "t.npz", split="all")
    assert data.shape == (3,) and data.y.tolist() == [i % 2 for i in range(20)]
    assert float(data.x.min()) == 0.0 and float(data.x.max()) == 1.0

    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError):
        aekit.load_dataset(tmp_path / "obj.npy")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="not a readable .npy"):
        aekit.load_dataset(tmp_path / "bad.npy")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        aekit.load_dataset(tmp_path / "bad.npz")
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    with pytest.raises(DataError, match="no samples"):
        aekit.load_dataset(tmp_path / "empty.npy")


def ids_index(data, name: str) -> int:
    return data.ids.index(name)


def test_image_folder_keeps_16_bit_values_and_refuses_32_bit_ones(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "deep").mkdir()
    values = rng.integers(0, 65536, (5, 4)).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep" / "a.png")
    Image.fromarray(rng.integers(0, 256, (5, 4), dtype=np.uint8)).save(tmp_path / "deep" / "b.png")
    data = aekit.load_dataset(tmp_path / "deep", split="all")
    reread = np.asarray(Image.open(tmp_path / "deep" / "a.png"), dtype=np.float64)  # what the file holds
    np.testing.assert_allclose(data.x[0, 0].numpy(), reread / 65535, atol=1e-6)
    assert len(np.unique(data.x[0].numpy())) > 15  # not squashed into a few 8-bit levels
    np.testing.assert_allclose(data.x[1, 0].numpy(), np.asarray(Image.open(tmp_path / "deep" / "b.png")) / 255, atol=1e-6)
    resized = aekit.load_dataset(tmp_path / "deep", split="all", image_size="10x8")
    assert resized.shape == (1, 10, 8) and 0 <= resized.x.min() and resized.x.max() <= 1
    Image.fromarray(np.full((5, 4), 10**6, dtype=np.int32)).save(tmp_path / "deep" / "c.tif")
    with pytest.raises(DataError, match="c.tif holds 32-bit pixels"):
        aekit.load_dataset(tmp_path / "deep")
    Image.fromarray(np.full((5, 4), 3.5, dtype=np.float32)).save(tmp_path / "deep" / "c.tif")
    with pytest.raises(DataError, match="c.tif holds floating-point pixels outside"):
        aekit.load_dataset(tmp_path / "deep")


def test_image_folder_with_class_subfolders(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (6, 7), dtype=np.uint8)).save(tmp_path / "imgs" / label / f"{i}.png")
    data = aekit.load_dataset(tmp_path / "imgs", split="all")
    assert data.shape == (1, 6, 7) and data.classes == ["cats", "dogs"]
    assert data.y.tolist() == [0, 0, 0, 1, 1, 1]
    first = np.asarray(Image.open(tmp_path / "imgs" / "cats" / "0.png"), dtype=np.float32) / 255
    np.testing.assert_allclose(data.x[0, 0].numpy(), first)

    assert data.ids == ["cats/0.png", "cats/1.png", "cats/2.png", "dogs/0.png", "dogs/1.png", "dogs/2.png"]  # paths under the folder

    grey_rgb = np.repeat(rng.integers(0, 256, (6, 7, 1), dtype=np.uint8), 3, axis=2)  # a grey photo saved as RGB
    Image.fromarray(grey_rgb).save(tmp_path / "imgs" / "dogs" / "grey-rgb.png")
    assert aekit.load_dataset(tmp_path / "imgs", split="all").shape == (1, 6, 7)
    Image.fromarray(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)).save(tmp_path / "imgs" / "dogs" / "rgb.png")
    colour = aekit.load_dataset(tmp_path / "imgs", split="all")
    assert colour.shape == (3, 6, 7)
    np.testing.assert_allclose(colour.x[0].numpy(), np.stack([first] * 3))  # grey images become RGB with equal channels
    grey = aekit.load_dataset(tmp_path / "imgs", split="all", channels=1)  # as a grey model reads them
    assert grey.shape == (1, 6, 7)
    np.testing.assert_allclose(grey.x[ids_index(grey, "dogs/rgb.png"), 0].numpy(), np.asarray(Image.open(tmp_path / "imgs" / "dogs" / "rgb.png").convert("L")) / 255, atol=1e-6)
    (tmp_path / "imgs" / "dogs" / "rgb.png").unlink()
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "imgs" / "dogs" / "small.png")
    with pytest.raises(DataError, match="one size"):
        aekit.load_dataset(tmp_path / "imgs")
    (tmp_path / "imgs" / "dogs" / "small.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image .*small.png"):
        aekit.load_dataset(tmp_path / "imgs")


def test_passing_a_fitted_scaling_reuses_it(tmp_path):
    np.save(tmp_path / "a.npy", np.array([[0.0], [10.0]]))
    np.save(tmp_path / "b.npy", np.array([[5.0], [20.0]]))
    first = aekit.load_dataset(tmp_path / "a.npy", split="all")
    second = aekit.load_dataset(tmp_path / "b.npy", split="all", scaling=first.scaling)
    assert torch.allclose(second.x, torch.tensor([[0.5], [2.0]]))


@pytest.mark.parametrize("name", ["cardio", "ionosphere", "letter", "mnist", "pima", "satellite"])
def test_mat_reader_matches_scipy_on_the_odds_files(shared_data, name):
    from aekit.data.matfile import read_mat_arrays

    ours, theirs = read_mat_arrays(shared_data / "odds" / f"{name}.mat"), loadmat(shared_data / "odds" / f"{name}.mat")
    for key in ("X", "y"):
        np.testing.assert_array_equal(ours[key], theirs[key])


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8, np.int16, np.int32, np.bool_])
def test_mat_reader_matches_scipy_on_written_files(tmp_path, compress, dtype):
    from scipy.io import savemat

    from aekit.data.matfile import read_mat_arrays

    rng = np.random.default_rng(0)
    arrays = {"X": (rng.random((7, 3)) * 100).astype(dtype), "y": np.arange(7).reshape(7, 1), "v": np.arange(3.0), "s": "text", "c": {"a": 1}}
    savemat(tmp_path / "f.mat", arrays, do_compression=compress)
    ours, theirs = read_mat_arrays(tmp_path / "f.mat"), loadmat(tmp_path / "f.mat")
    assert set(ours) == {"X", "y", "v"}
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key].astype(np.float64))
    np.testing.assert_allclose(aekit.load_dataset(tmp_path / "f.mat", split="all", scaling=None).x.numpy(), arrays["X"].astype(np.float32))
