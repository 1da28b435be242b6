"""The CLI end to end, on tiny budgets."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import aekit
from aekit.cli import main

TINY = ["--code-size", "4", "--hidden", "16", "--no-progress"]


def train(run, *extra):
    assert main(["train", "--epochs", "2", "--out", str(run), *TINY, *extra]) == 0


def test_train_evaluate_encode_reconstruct(tmp_path, capsys):
    run = tmp_path / "run"
    train(run)
    assert (run / "data.json").exists() and (run / "reconstructions.png").exists()
    assert "run folder:" in capsys.readouterr().out

    assert main(["evaluate", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    model, test = aekit.load(run), aekit.load_dataset("digits", split="test")
    with torch.no_grad():
        sse = ((model(test.x).x_hat - test.x) ** 2).sum((1, 2, 3)).mean().item()
    assert result["samples"] == len(test) == 359
    assert result["sum_squared_error_per_sample"] == pytest.approx(sse, rel=1e-5)
    assert result["mean_squared_error_per_feature"] == pytest.approx(sse / 64, rel=1e-5)

    assert main(["evaluate", str(run)]) == 0
    assert "squared error per sample" in capsys.readouterr().out

    assert main(["encode", str(run), "digits", "-o", str(tmp_path / "codes.npy")]) == 0
    codes = np.load(tmp_path / "codes.npy")
    everything = aekit.load_dataset("digits", split="all").x
    assert codes.shape == (1797, 4)
    np.testing.assert_allclose(codes, model.encode(everything).detach().numpy(), rtol=1e-5, atol=1e-6)
    assert main(["encode", str(run), "digits", "-o", str(tmp_path / "codes.npz")]) == 0
    assert np.load(tmp_path / "codes.npz")["y"].shape == (1797,)

    assert main(["reconstruct", str(run), "-n", "5", "-o", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["reconstruct", str(run), "--split", "train", "-o", str(tmp_path / "r.npy")]) == 0
    assert np.load(tmp_path / "r.npy").shape == (1438, 1, 8, 8)


def test_default_run_folder_is_never_reused(tmp_path):
    assert main(["train", "--epochs", "1", *TINY]) == 0
    assert main(["train", "--epochs", "1", *TINY]) == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ae-digits", "ae-digits-2"]


def test_resume_extends_a_run_to_the_same_weights(tmp_path):
    train(tmp_path / "a", "--epochs", "4")
    train(tmp_path / "b")
    assert main(["train", "--resume", str(tmp_path / "b"), "--epochs", "4", "--no-progress"]) == 0
    a = aekit.checkpoint.read_tensors(tmp_path / "a" / "last.safetensors")
    b = aekit.checkpoint.read_tensors(tmp_path / "b" / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_tabular_csv_run_reuses_its_scaling(tmp_path, capsys):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(50, 5)) * [1, 10, 100, 1000, 0.1]
    np.savetxt(tmp_path / "d.csv", table, delimiter=",", header="a,b,c,d,e", comments="")
    run = tmp_path / "run"
    train(run, "--dataset", str(tmp_path / "d.csv"), "--split", "all")
    assert main(["reconstruct", str(run), str(tmp_path / "d.csv"), "--split", "all", "-o", str(tmp_path / "r.npy")]) == 0
    assert main(["reconstruct", str(run), "-o", str(tmp_path / "r.png")]) == 2
    assert "not an image" in capsys.readouterr().err
    assert np.load(tmp_path / "r.npy").shape == (50, 5)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--model", "aee"], "unknown model 'aee'. Did you mean 'ae'?"),
        (["train", "--dataset", "mnsit"], "Did you mean 'mnist'?"),
        (["train", "--code-size", "-2", "--epochs", "1"], "code_size"),
        (["train", "--lr", "0"], "lr must be a positive number"),
        (["evaluate", "nowhere"], "does not exist"),
        (["train", "--resume", "nowhere"], "not a training run"),
    ],
)
def test_user_errors_are_one_line_with_status_2(argv, message, capsys):
    assert main(argv + ["--no-progress"] if argv[0] == "train" else argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aekit: error: ") and message in err and "\n" not in err


def test_installed_command_prints_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "aekit", "evaluate", str(tmp_path / "none")], capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "does not exist" in result.stderr


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"], ["encode"], ["reconstruct"], ["list-models"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0 and "usage: aekit" in capsys.readouterr().out


def test_list_models_prints_every_variant_with_a_description(capsys):
    assert main(["list-models"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == aekit.list_models()
    assert all(len(line.split(maxsplit=1)[1]) > 20 for line in lines)


# extra CLI arguments that give each registered model a tiny configuration on digits (1, 8, 8)
CLI_OPTIONS = {
    "conv": ["--option", "channels=[4]"],
    "conv-denoising": ["--option", "channels=[4]", "--option", "noise=masking:0.2"],
    "conv-vae": ["--option", "channels=[4]"],
    "vqvae": ["--option", "channels=[4]", "--option", "codebook_size=8"],
    "vae-gan": ["--option", "channels=[4]"],
    "draem": ["--architecture", "conv", "--option", "channels=[4]", "--option", "segmentation_channels=[4,8]"],
    "recirculation": ["--optimizer", "sgd", "--lr", "0.5"],
    "sparse": ["--option", "penalty=kl", "--option", "rho=0.05"],
    "stacked": ["--pretrain-epochs", "1"],
    "vae": ["--binarize"],
}


@pytest.mark.parametrize("name", [n for n in aekit.list_models() if not n.startswith("readme")])
def test_every_model_trains_saves_and_evaluates_from_the_cli(name, tmp_path, capsys):
    hidden = [] if name in ("recirculation", "vqvae") else ["--hidden", "16"]  # no hidden layers to size
    argv = ["train", "--model", name, "--epochs", "2", "--code-size", "4", *hidden, "--no-progress", "--out", str(tmp_path / name)]
    assert main(argv + CLI_OPTIONS.get(name, [])) == 0, capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / name), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert result["samples"] == 359 and np.isfinite(result["sum_squared_error_per_sample"])
    assert type(aekit.load(tmp_path / name)).model_name == name


def test_evaluate_a_flat_model_on_images_compares_in_the_models_shape(tmp_path, capsys):
    """A model built on flat rows (as the benchmarks build MNIST's) scores the image data set it was fit to,
    as the same weights built on images do."""
    flat = aekit.get_model("ae", input_shape=(64,), code_size=4, hidden=(16,))
    image = aekit.get_model("ae", input_shape=(1, 8, 8), code_size=4, hidden=(16,))
    image.load_state_dict(flat.state_dict())
    numbers = []
    for name, model in (("flat", flat), ("image", image)):
        aekit.save(model, tmp_path / name)
        assert main(["evaluate", str(tmp_path / name), "--dataset", "digits", "--json"]) == 0
        numbers.append(json.loads(capsys.readouterr().out))
    assert numbers[0] == numbers[1]
    aekit.save(aekit.get_model("ae", input_shape=(784,), code_size=4, hidden=(16,)), tmp_path / "wide")
    assert main(["evaluate", str(tmp_path / "wide"), "--dataset", "digits"]) == 2
    assert "expects samples of shape (784,)" in capsys.readouterr().err


def test_the_parser_and_import_aekit_need_no_torch():
    import subprocess
    import sys

    code = "import sys, aekit, aekit.cli; aekit.cli.build_parser(); print(sorted(m for m in ('torch', 'sklearn', 'pandas', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # aekit --help and argument errors answer without the heavy imports


def test_the_names_the_parser_offers_are_the_registries():
    from aekit import settings
    from aekit.losses import RECONSTRUCTION_LOSSES
    from aekit.models.architectures import list_architectures
    from aekit.models.layers import ACTIVATIONS
    from aekit.training import trainer

    assert settings.ARCHITECTURE_NAMES == tuple(sorted(list_architectures()))
    assert settings.ACTIVATION_NAMES == tuple(ACTIVATIONS) and settings.LOSS_NAMES == tuple(RECONSTRUCTION_LOSSES)
    assert settings.OPTIMIZER_NAMES == tuple(trainer.OPTIMIZERS) and settings.SCHEDULE_NAMES == tuple(trainer.SCHEDULES)
    assert settings.PRECISION_NAMES == tuple(trainer.PRECISIONS)


def test_public_names_are_imported_on_first_use_and_stay_functions():
    import aekit.apps
    import aekit.apps.detect  # the submodule named like its function

    assert callable(aekit.apps.detect) and aekit.apps.detect.__module__ == "aekit.apps.detect"
    assert aekit.Trainer.__name__ == "Trainer" and "Trainer" in dir(aekit)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        aekit.nothing
