"""Defects in product photographs: synthetic defects, the DRAEM model, anomaly maps, masks, pixel-level measures, the CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import roc_auc_score

import aekit
from aekit.apps.segment import anomaly_maps, find_masks, pixel_roc_auc, pro, read_mask
from aekit.cli import main
from aekit.data.files import masks_beside
from aekit.defaults import PHOTO_SIZE, PHOTO_STEPS, photo_defaults, photo_training
from aekit.models.defects import focal_loss, synthetic_defects


def test_synthetic_defects_change_only_masked_pixels_of_a_share_of_images():
    torch.manual_seed(0)
    x = torch.rand(400, 1, 32, 40)
    torch.manual_seed(1)
    seen, masks = synthetic_defects(x, share=0.5)
    assert seen.shape == x.shape and masks.shape == (400, 1, 32, 40)
    assert set(masks.unique().tolist()) <= {0.0, 1.0}
    assert seen.min() >= 0 and seen.max() <= 1
    outside = masks.expand_as(x) == 0
    torch.testing.assert_close(seen[outside], x[outside])  # nothing changes outside a defect
    with_defect = masks.flatten(1).amax(1).bool()
    assert 0.38 < with_defect.float().mean() < 0.52  # half asked; a few blobs fall below their threshold everywhere
    assert (seen[with_defect] != x[with_defect]).flatten(1).any(1).all()  # a defect is visible
    torch.manual_seed(1)
    again, _ = synthetic_defects(x, share=0.5)
    torch.testing.assert_close(again, seen)  # drawn from torch's generator: seeded, repeatable


def test_focal_loss_matches_its_formula():
    logits, target = torch.tensor([[2.0, -1.0, 0.5, -3.0]]), torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    p = 1 / (1 + np.exp(-logits.numpy()[0]))
    p_t = np.where(target.numpy()[0] == 1, p, 1 - p)
    expected = np.mean(-((1 - p_t) ** 2) * np.log(p_t))
    assert focal_loss(logits, target).item() == pytest.approx(expected, rel=1e-5)
    assert focal_loss(logits, target, gamma=0.0).item() == pytest.approx(F.binary_cross_entropy_with_logits(logits, target).item(), rel=1e-5)


def test_draem_scores_by_the_largest_window_mean_of_its_map():
    torch.manual_seed(0)
    model = aekit.get_model("draem", input_shape=(1, 24, 30), window=0.25).eval()
    x = torch.rand(3, 1, 24, 30)
    with torch.no_grad():
        maps = model.anomaly_map(x).numpy()
        scores = model.anomaly_score(x).numpy()
    k = model.window_pixels()
    assert k % 2 == 1 and k == 7  # a quarter of the shorter side, odd
    threshold = float(np.median(scores))
    outlines = model.outline_maps(torch.from_numpy(maps), [(24, 30)] * 3, threshold)
    for m, score, outline in zip(maps, scores, outlines):  # brute force: every window, clipped at the border
        means = np.array([[m[max(0, i - k // 2): i + k // 2 + 1, max(0, j - k // 2): j + k // 2 + 1].mean() for j in range(30)] for i in range(24)])
        assert score == pytest.approx(means.max(), rel=1e-5)
        far = np.abs(means - threshold) > 1e-6  # the outline: the windows above the image score's threshold
        assert (outline[far] == (means > threshold)[far]).all()
    assert ((maps >= 0) & (maps <= 1)).all()


def test_draem_fills_its_map_with_half_of_its_grey_closing():
    from scipy import ndimage

    model = aekit.get_model("draem", input_shape=(1, 24, 30), fill=0.3)
    k = model.fill_pixels()
    assert k == 7  # 0.3 of the shorter side, odd
    octagon = np.zeros((k, k), bool)
    octagon[k // 2, k // 2] = True
    for i in range(k // 2):  # a square, then a plus sign, then a square: the octagon's corners cut off
        octagon = ndimage.binary_dilation(octagon, np.ones((3, 3)) if i % 2 == 0 else ndimage.generate_binary_structure(2, 1))
    assert octagon.sum() == 49 - 4 and not octagon[0, 0] and octagon[0, 1] and octagon[1, 0]
    maps = torch.rand(4, 24, 30) ** 4
    filled = model.fill_map(maps).numpy()
    for m, f in zip(maps.numpy(), filled):  # scipy's closing; "nearest" = the octagon clipped at the border, for max and min
        closed = ndimage.grey_closing(m, footprint=octagon, mode="nearest")
        np.testing.assert_allclose(f, (m + closed) / 2, rtol=1e-6)
        assert f.max() == pytest.approx(m.max()) and (f >= m - 1e-7).all()
    ring = torch.zeros(1, 24, 30)
    ring[0, 8:16, 10:18] = 0.8
    ring[0, 10:14, 12:16] = 0.0  # a marked outline, its inside left out
    ring[0, 2, 25] = 1.0  # and a lone pixel, far from it
    filled = model.fill_map(ring)[0]
    assert (filled[10:14, 12:16] == 0.4).all()  # the inside rises halfway to its edges
    assert filled[2, 25] == 1.0 and filled[2, 24] == 0 and filled[0, 0] == 0  # nothing else moves
    unfilled = aekit.get_model("draem", input_shape=(1, 24, 30), fill=0)
    assert unfilled.fill_pixels() == 1 and torch.equal(unfilled.fill_map(maps), maps)


def test_draem_builds_on_every_architecture_for_images():
    x = torch.rand(4, 1, 16, 16)
    for architecture in ("mlp", "conv"):
        model = aekit.get_model("draem", input_shape=(1, 16, 16), architecture=architecture, hidden=(32,) if architecture == "mlp" else None)
        out = model.train()(x)
        out.loss.backward()
        assert out.x_hat.shape == x.shape and set(out.losses) == {"reconstruction", "segmentation"}
        assert model.eval().anomaly_map(x).shape == (4, 16, 16)
    with pytest.raises(aekit.ConfigError, match="segments images"):
        aekit.get_model("draem", input_shape=(64,))
    with pytest.raises(aekit.ConfigError, match="input_scaling"):
        aekit.get_model("draem", input_shape=(1, 16, 16), input_scaling="standard")
    with pytest.raises(aekit.ConfigError, match="segmentation_channels"):
        aekit.get_model("draem", input_shape=(1, 16, 16), segmentation_channels=[])


def test_members_read_the_whole_input_or_their_share_of_its_channels():
    from aekit.models.defects import Members

    torch.manual_seed(0)
    convs = [torch.nn.Conv2d(2, 3, 1) for _ in range(2)]
    x = torch.rand(4, 2, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(Members(convs, split=False)(x), torch.cat([convs[0](x), convs[1](x)], 1))
        pairs = torch.rand(4, 4, 5, 5)
        torch.testing.assert_close(Members(convs, split=True)(pairs), torch.cat([convs[0](pairs[:, :2]), convs[1](pairs[:, 2:])], 1))


def single_members(model):
    """One-network draem models holding each member's weights of ``model``."""
    singles = []
    for i in range(model.members):
        single = aekit.get_model("draem", **{**model.config, "members": 1}).eval()
        for name in ("encoder", "decoder", "segmenter"):
            getattr(single, name).load_state_dict(getattr(model, name)[i].state_dict())
        singles.append(single)
    return singles


def test_draem_members_average_their_maps_and_losses():
    torch.manual_seed(0)
    model = aekit.get_model("draem", input_shape=(1, 12, 16), members=3, defect_share=1.0, channels=(4,), segmentation_channels=(4, 8)).eval()
    x = torch.rand(5, 1, 12, 16)
    singles = single_members(model)
    with torch.no_grad():
        torch.testing.assert_close(model.member_maps(x), torch.cat([m.member_maps(x) for m in singles], 1))
        torch.testing.assert_close(model.anomaly_map(x), model.fill_map(model.member_maps(x).mean(1)))  # filled once, after
        losses = model(x).losses
        alone = [m(x).losses for m in singles]  # validation: the same seeded defects for every member
        for term in ("reconstruction", "segmentation"):
            torch.testing.assert_close(losses[term], torch.stack([a[term] for a in alone]).mean())
        codes = model.encode(x)
        assert codes.shape == (5, *model.code_shape) == (5, 3 * model.code_size, 6, 8)
        torch.testing.assert_close(codes, torch.cat([m.encode(x) for m in singles], 1))
        restored = torch.sigmoid(torch.stack([m.decode_logits(m.encode(x)) for m in singles]).mean(0))  # mean logits
        torch.testing.assert_close(model.decode(codes), restored)


def test_draem_runs_saved_before_members_existed_load_as_one_network(tmp_path):
    torch.manual_seed(0)
    model = aekit.get_model("draem", input_shape=(1, 12, 16), members=1, channels=(4,), segmentation_channels=(4, 8)).eval()
    aekit.save(model, tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    del config["options"]["members"], config["options"]["fill"]  # as an earlier aekit wrote it
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    loaded = aekit.load(tmp_path / "old")
    x = torch.rand(2, 1, 12, 16)
    assert loaded.members == 1 and loaded.fill == 0 and loaded.fill_pixels() == 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.anomaly_map(x), model.member_maps(x)[:, 0])  # the map as it was drawn then
    new = aekit.get_model("draem", input_shape=(1, 12, 16))
    assert new.members == 2 and new.fill == 0.45  # new models: two networks, their map filled in


def test_draem_validates_on_the_same_synthetic_defects_every_epoch():
    torch.manual_seed(0)
    model = aekit.get_model("draem", input_shape=(1, 16, 16), defect_share=1.0).eval()
    x = torch.rand(6, 1, 16, 16)
    state = torch.get_rng_state()
    with torch.no_grad():
        first, second = model(x).losses, model(x).losses
    assert torch.equal(torch.get_rng_state(), state)  # the caller's generator is left as it was
    assert first["segmentation"].item() == second["segmentation"].item()
    with torch.no_grad():  # with defects to find, the untrained head's loss is not the loss of a blank mask
        logits = model.segment(x)[2]
    assert first["segmentation"].item() != pytest.approx(focal_loss(logits, torch.zeros_like(logits)).mean().item(), rel=1e-3)


def test_the_best_epoch_is_chosen_by_the_models_monitored_term():
    from aekit.training.trainer import RunState

    model = aekit.get_model("draem", input_shape=(1, 8, 8))
    state = RunState()
    for epoch, (loss, segmentation) in enumerate([(1.0, 0.5), (2.0, 0.3), (0.5, 0.4)], 1):
        state.add({"epoch": epoch, "train_loss": loss, "val_loss": loss, "val_segmentation": segmentation}, model)
    assert model.monitor == "segmentation" and state.history.best_epoch == 2
    plain = aekit.get_model("ae", input_shape=(4,))
    state = RunState()
    for epoch, (loss, segmentation) in enumerate([(1.0, 0.5), (2.0, 0.3), (0.5, 0.4)], 1):
        state.add({"epoch": epoch, "train_loss": loss, "val_loss": loss, "val_segmentation": segmentation}, plain)
    assert state.history.best_epoch == 3


@pytest.mark.slow
def test_draem_learns_to_find_a_defect_it_never_saw():
    """Stripes as the product; trained on good stripes with synthetic defects, it must find a dark square."""
    torch.manual_seed(0)
    rows = torch.arange(32).float()
    good = (0.5 + 0.2 * torch.sin(rows / 2 + torch.rand(160, 1, 1, 1) * 6)).expand(-1, 1, 32, 32).contiguous()
    good = (good + 0.02 * torch.randn_like(good)).clamp(0, 1)
    model = aekit.get_model("draem", input_shape=(1, 32, 32), segmentation_channels=(8, 16), channels=(8, 16), code_size=8)
    aekit.fit(model, good[:128], epochs=25, batch_size=16, lr=3e-3, progress=False, val_fraction=0.0)
    test = good[128:].clone()
    defect = torch.zeros(32, 1, 32, 32, dtype=torch.bool)
    defect[16:, :, 10:16, 12:18] = True  # half the test images get a dark square
    test[defect] = 0.05
    maps = anomaly_maps(model, test)
    scores = aekit.apps.anomaly_scores(model, test)
    labels = defect.flatten(1).any(1).numpy()
    assert roc_auc_score(labels, scores) > 0.9
    assert roc_auc_score(defect[:, 0].numpy().ravel(), maps.ravel()) > 0.9


def test_anomaly_maps_come_back_in_the_images_own_grid():
    model = aekit.get_model("conv", input_shape=(1, 16, 16), channels=(4,), code_size=4).eval()
    x = torch.rand(2, 1, 16, 16)
    maps = anomaly_maps(model, x)
    with torch.no_grad():
        expected = model.feature_errors(x).sum(1).numpy()  # a plain autoencoder's map: its squared error per pixel
    np.testing.assert_allclose(maps, expected, rtol=1e-5)
    bigger = anomaly_maps(model, torch.rand(2, 40, 24))  # grey images of another size, without the channel axis
    assert bigger.shape == (2, 40, 24)
    sized = anomaly_maps(model, x, sizes=[(30, 20), (10, 12)])
    assert [m.shape for m in sized] == [(30, 20), (10, 12)]
    with pytest.raises(aekit.DataError, match=r"\(n, 1, H, W\)"):
        anomaly_maps(model, torch.rand(2, 3, 16, 16))


def _pro_brute_force(maps, masks, max_fpr):
    """PRO by its definition, threshold by threshold over every distinct value, integrated on a fine grid."""
    from scipy import ndimage

    normal = np.concatenate([m[~k] for m, k in zip(maps, masks)])
    regions = [m[lab == r] for m, k in zip(maps, masks) for lab, n in [ndimage.label(k)] for r in range(1, n + 1)]
    points = []
    for t in np.unique(np.concatenate([normal, *regions]))[::-1]:
        points.append(((normal > t).mean(), np.mean([(v > t).mean() for v in regions])))
    points = [(0.0, 0.0)] + [p for p in points if p[0] <= max_fpr]
    fpr, overlap = np.array(points).T
    grid = np.linspace(0, max_fpr, 20001)
    step = overlap[np.searchsorted(fpr, grid, side="right") - 1]  # the overlap reached at each false-positive rate
    return np.trapezoid(step, grid) / max_fpr


def test_pro_and_pixel_roc_auc_match_their_definitions():
    rng = np.random.default_rng(0)
    masks = [np.zeros((30, 30), bool) for _ in range(4)]
    masks[0][3:8, 3:9] = True
    masks[0][20:22, 10:25] = True  # two regions in one image: each counts alike
    masks[2][10:20, 10:20] = True
    maps = [rng.random((30, 30)) + 0.8 * k for k in masks]
    assert pixel_roc_auc(maps, masks) == pytest.approx(roc_auc_score(np.concatenate([k.ravel() for k in masks]), np.concatenate([m.ravel() for m in maps])))
    assert pro(maps, masks, steps=2000) == pytest.approx(_pro_brute_force(maps, masks, 0.3), abs=0.01)
    perfect = [k.astype(float) + 0.01 * rng.random(k.shape) for k in masks]
    assert pro(perfect, masks) > 0.99
    assert pro([rng.random((30, 30)) for _ in masks], masks) < 0.3  # chance: overlap = FPR, area 0.15 / 0.3 = 0.5 at most


def _photo(path, h, w, seed, dark=None):
    rng = np.random.default_rng(seed)
    pixels = (120 + 40 * np.sin(np.arange(w) / 3)[None, :] + rng.normal(0, 4, (h, w))).clip(0, 255)
    if dark is not None:
        pixels[dark] = 10
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


def _mask(path, h, w, region):
    m = np.zeros((h, w), np.uint8)
    m[region] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(m).save(path)


def test_masks_are_found_in_the_mvtec_layout_and_beside_the_images(tmp_path):
    region = (slice(5, 10), slice(5, 10))
    _photo(tmp_path / "test/good/a.jpg", 64, 70, 0)
    _photo(tmp_path / "test/crack/b.jpg", 64, 70, 1, region)
    _mask(tmp_path / "ground_truth/crack/b_mask.png", 64, 70, region)
    ids = ["crack/b.jpg", "good/a.jpg"]
    found = find_masks(tmp_path / "ground_truth", tmp_path / "test", ids)
    assert found == {"crack/b.jpg": tmp_path / "ground_truth/crack/b_mask.png"}
    assert read_mask(found["crack/b.jpg"], (64, 70), tmp_path / "b.jpg")[region].all()
    with pytest.raises(aekit.DataError, match="b_mask.png is 70x64 but its image .* is 60x64"):
        read_mask(found["crack/b.jpg"], (64, 60), tmp_path / "b.jpg")
    _mask(tmp_path / "ground_truth/crack/orphan_mask.png", 64, 70, region)
    with pytest.raises(aekit.DataError, match="orphan_mask.png belongs to no image"):
        find_masks(tmp_path / "ground_truth", tmp_path / "test", ids)
    # beside: the magnetic-tile layout, <stem>.png next to <stem>.jpg; the masks are not read as images
    _photo(tmp_path / "beside/c.jpg", 64, 70, 2, region)
    _mask(tmp_path / "beside/c.png", 64, 70, region)
    _photo(tmp_path / "beside/d.png", 64, 70, 3)  # a PNG image without a JPEG twin is an image
    files = sorted((tmp_path / "beside").iterdir())
    assert masks_beside(files) == {tmp_path / "beside/c.png"}
    # the rule find_masks reads by: a lossless <stem>.bmp beside <stem>.jpg is a mask; a PNG and a BMP of one stem
    # are both images (neither format is only for masks' twins); <stem>_mask.tif beside any image is a mask
    names = [tmp_path / n for n in ("f.jpg", "f.bmp", "g.png", "g.bmp", "h.png", "h_mask.tif")]
    assert masks_beside(names) == {tmp_path / "f.bmp", tmp_path / "h_mask.tif"}
    assert find_masks(tmp_path / "beside", tmp_path / "beside", ["c.jpg", "d.png"]) == {"c.jpg": tmp_path / "beside/c.png"}
    assert aekit.load_dataset(str(tmp_path / "beside"), split="all").ids == ["c.jpg", "d.png"]


def test_photo_folders_default_to_the_defect_model():
    assert photo_defaults([(28, 28)] * 5) == (None, None)  # digits: the plain models
    assert photo_defaults([(100, 120), (100, 120)]) == ("draem", None)  # one small size: kept
    assert photo_defaults([(100, 120), (300, 200)]) == ("draem", str(PHOTO_SIZE))  # mixed sizes: one grid
    assert photo_defaults([]) == (None, None)


@pytest.mark.parametrize("avx512_bf16, amx", [(True, False), (False, True), (False, False)])
def test_the_defect_model_trains_in_bf16_where_the_cpu_computes_in_it_else_half_the_steps(monkeypatch, avx512_bf16, amx):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    native = avx512_bf16 or amx
    assert photo_training("cpu") == (("bf16", PHOTO_STEPS) if native else ("fp32", PHOTO_STEPS // 2))
    assert photo_training("cpu", "fp32") == ("fp32", PHOTO_STEPS // 2)  # asked for: kept, in the time of the default
    assert photo_training("cpu", "bf16") == ("bf16", PHOTO_STEPS if native else PHOTO_STEPS // 2)


@pytest.fixture(scope="module")
def tiles(tmp_path_factory):
    """An MVTec-layout folder of small striped photographs of two sizes, dark-square defects with masks."""
    root = tmp_path_factory.mktemp("tiles")
    for i in range(24):
        _photo(root / f"train/good/t{i:02d}.jpg", 64 + 8 * (i % 2), 70, i)
    for i in range(4):
        _photo(root / f"test/good/g{i}.jpg", 64, 70, 100 + i)
        region = (slice(20, 30), slice(30 + i, 38 + i))
        _photo(root / f"test/hole/h{i}.jpg", 72, 70, 200 + i, region)
        _mask(root / f"ground_truth/hole/h{i}_mask.png", 72, 70, region)
    return root


@pytest.mark.slow
def test_train_and_detect_on_a_photo_folder(tiles, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--dataset", str(tiles / "train/good"), "--split", "all", "--out", str(run), "--epochs", "1", "--image-size", "32", "--quiet"]
    assert main(argv) == 0
    capsys.readouterr()
    model = aekit.load(run)
    assert model.model_name == "draem" and tuple(model.config["input_shape"]) == (1, 32, 32)
    assert json.loads((run / "trainer.json").read_text())["precision"] == photo_training("auto")[0]
    scores = tmp_path / "scores.csv"
    assert main(["detect", str(run), "--dataset", str(tiles / "test"), "--normal-class", "good", "--masks", str(tiles / "ground_truth"), "--maps-npy", "-o", str(scores)]) == 0
    said = json.loads(capsys.readouterr().out)
    assert 0 <= said["pixel_roc_auc"] <= 1 and 0 <= said["pro"] <= 1 and said["masks"] == 4 and said["roc_auc"] is not None
    table = pd.read_csv(scores)
    assert sorted(table["id"]) == sorted([f"good/g{i}.jpg" for i in range(4)] + [f"hole/h{i}.jpg" for i in range(4)])
    images = aekit.load_dataset(str(tiles / "test"), split="all", image_size=32)  # the scores were read from the maps: the same
    expected = dict(zip(images.ids, aekit.apps.anomaly_scores(model, images.x)))
    np.testing.assert_allclose(table["score"], [expected[i] for i in table["id"]], rtol=1e-5)
    maps = next(p for p in said["wrote"] if p.endswith("-maps"))
    overlay = Image.open(f"{maps}/hole/h0.png")
    assert overlay.size == (70, 72) and overlay.mode == "RGB"  # drawn over the image in its own size
    assert np.load(f"{maps}/hole/h0.npy").shape == (72, 70)
    assert main(["report", str(run), "-o", str(tmp_path / "report.html")]) == 0  # a folder of maps among the results
    assert "<th>pro</th>" in (tmp_path / "report.html").read_text()


@pytest.mark.slow
def test_defect_input_errors_are_one_line(tiles, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(tiles / "train/good"), "--split", "all", "--out", str(run), "--epochs", "1", "--image-size", "32", "--quiet"]) == 0
    capsys.readouterr()
    bad = tmp_path / "bad"
    _mask(bad / "hole/h0_mask.png", 10, 10, (slice(1, 3), slice(1, 3)))
    for masks, message in ((bad, "mask .*h0_mask.png is 10x10 but its image"), (tmp_path / "none", "is not a folder of defect masks")):
        assert main(["detect", str(run), "--dataset", str(tiles / "test"), "--normal-class", "good", "--masks", str(masks), "-o", str(tmp_path / "s.csv")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and re.search(message, err), err
    empty = tmp_path / "empty/train/good"
    empty.mkdir(parents=True)
    assert main(["train", "--dataset", str(empty), "--split", "all", "--out", str(tmp_path / "r2"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no images" in err and "empty/train/good" in err
    (tiles / "test/good/broken.jpg").write_bytes(b"not a picture")
    try:
        assert main(["detect", str(run), "--dataset", str(tiles / "test"), "--normal-class", "good", "-o", str(tmp_path / "s.csv")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "broken.jpg" in err
    finally:
        (tiles / "test/good/broken.jpg").unlink()
