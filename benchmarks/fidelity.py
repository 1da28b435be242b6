"""The published numbers aekit sets out to match: one recipe each, chosen on a validation split carved from the
training set (never on the test set), the test number measured once at the end.

- deep_ae_test_sse: the 784-1000-500-250-30 autoencoder of Hinton & Salakhutdinov (2006), test squared error
  per image (published, with RBM pretraining: 3.00);
- vae_test_log_likelihood: the 784-200-200-50 VAE on dynamically binarised MNIST, k = 5000 (Burda et al. 2016:
  -86.76; the goal is within 1 nat);
- iwae_test_log_likelihood: the same network trained as an IWAE with k = 50 (Burda et al.: -84.78);
- mnist_one_class_mean_auroc: each digit normal in turn, ROC AUC on the 10,000 test images, mean of 10 (OCGAN: 0.975).

    python benchmarks/fidelity.py [--only deep_ae,vae,iwae,one_class] [--quick] [--table]

Each part merges its entry (value, command, wall_s, machine, and the recipe) into
benchmarks/results/fidelity.json and rewrites fidelity.md beside the published numbers, so parts can run
one at a time (they are long on a CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

import aekit
from aekit.apps.detect import anomaly_scores
from aekit.apps.generate import log_likelihood
from common import DATA_DIR, ROOT, machine, mnist, test_error, write

PUBLISHED = {
    "deep_ae_test_sse": ("<=", 3.00, "Hinton & Salakhutdinov 2006 (RBM pretraining)"),
    "vae_test_log_likelihood": (">=", -87.76, "Burda et al. 2016 VAE -86.76, within 1 nat"),
    "iwae_test_log_likelihood": (">=", -85.78, "Burda et al. 2016 IWAE k = 50 -84.78, within 1 nat"),
    "mnist_one_class_mean_auroc": (">=", 0.975, "OCGAN (Perera et al. 2019) 0.975"),
}
RESULTS = ROOT / "results" / "fidelity.json"
RECORDED_BEFORE = {"loss": "mse", "schedule": "constant", "activation": "tanh", "init": "—"}  # settings older entries did not record: their values then
CHOOSE_BY = {"validation_sse": min, "validation_ll": max}  # how a part's candidates are compared, on validation data only


def validation_split(train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(validation, rest): 10% of ``train``, the trainer's own split for seed 0, so candidates stay comparable."""
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    n_val = round(0.1 * len(train))
    return train[order[:n_val]], train[order[n_val:]]


def deep_ae(quick: bool, noise: float = 0.1, weight_decay: float = 0.1, loss: str = "mse") -> dict:
    """Denoising (Gaussian noise) 784-1000-500-250-30 ELU MLP, Adam 1e-3 cosine over 100 epochs, decoupled
    weight decay (AdamW), weights averaged (EMA 0.999), the best epoch on a 10% validation split of the
    training images. Candidates (noise, weight decay, training loss: squared error or, as Hinton & Salakhutdinov
    fine-tuned, cross-entropy) are compared by the squared error on that validation split only."""
    train, test = mnist(DATA_DIR, flat=True)
    if quick:
        train = train[:5000]
    epochs = 1 if quick else 100
    val, train = validation_split(train)
    aekit.seed_everything(0)
    model = aekit.get_model("denoising", input_shape=(784,), code_size=30, hidden=(1000, 500, 250), activation="elu", noise=f"gaussian:{noise}", loss=loss)
    history = aekit.fit(model, train, val_data=val, epochs=epochs, batch_size=128, lr=1e-3, optimizer="adamw",
                        weight_decay=weight_decay, schedule="cosine", ema=0.999, seed=0, progress=False)
    return {"value": test_error(model, test), "validation_sse": test_error(model, val), "noise": noise, "weight_decay": weight_decay, "loss": loss,
            "best_epoch": history.best_epoch, "epochs": epochs, "train_sse": test_error(model, train)}


def vae(quick: bool, samples: int = 1, k: int = 5000, epochs: int = 100, schedule: str = "constant", activation: str = "tanh",
        lr: float = 1e-3, init: str | None = None, save: str | None = None) -> dict:
    """784-200-200-50 (tanh as Burda et al., or a candidate activation), Bernoulli, dynamic binarisation, Adam
    (1e-3, or a candidate rate; constant, or a cosine decay over all epochs), batch 100, KL warm-up over the
    first tenth; the best epoch on a 10% validation split. Candidates (schedule, activation, epochs) are compared by the log-likelihood
    (k = 1000) of that validation split only; k = 5000 on one fixed binarisation of the test set. With ``init``,
    training starts from a saved model's weights (a VAE trained on the same split), without warm-up."""
    train, test = mnist(DATA_DIR, flat=True)
    epochs = 1 if quick else epochs
    val, train = validation_split(train[:5000] if quick else train)
    name, options = ("iwae", {"samples": samples}) if samples > 1 else ("vae", {})
    aekit.seed_everything(0)
    model = aekit.get_model(name, input_shape=(784,), code_size=50, hidden=(200, 200), activation=activation, **options)
    if init:
        source = aekit.load(init)
        if aekit.checkpoint.model_config(source)["options"]["activation"] != activation:
            sys.exit(f"--init {init}: that model's activation is not {activation}; pass --likelihood-activation to match it")
        model.load_state_dict(source.state_dict())
    history = aekit.fit(model, train, val_data=val, epochs=epochs, batch_size=100, lr=lr, schedule=schedule, binarize=True,
                        kl_warmup=0 if init else max(1, epochs // 10), seed=0, progress=False)
    model.eval()
    if save:
        aekit.save(model, save)
    k = 100 if quick else k
    test_ll = log_likelihood(model, test[:500] if quick else test, k=k, binarize=True, seed=123).mean()
    validation_ll = log_likelihood(model, val, k=min(k, 1000), binarize=True, seed=456).mean()
    return {"value": float(test_ll), "validation_ll": float(validation_ll),
            "schedule": schedule, "activation": activation, "lr": lr, "init": init, "best_epoch": history.best_epoch, "epochs": epochs, "k": k,
            "active_units": history[-1].get("active_units")}


SMOOTHING = (0.0, 0.5, 0.75, 1.0, 1.5, 2.0)  # candidates for the one-class score's blur, in pixels
MEMBERS = (1, 3)  # candidates for the number of models (seeds 0, 1, ...) whose scores are averaged


def one_class_scores(train: torch.Tensor, scored: torch.Tensor, trainer: aekit.Trainer, options: dict, seeds: int, smoothing=SMOOTHING) -> dict:
    """Models trained on ``train`` with seeds 0 .. seeds - 1: for each blur, the scores of ``scored`` by each model."""
    scores: dict[float, list[np.ndarray]] = {sigma: [] for sigma in smoothing}
    for seed in range(seeds):
        aekit.seed_everything(seed)
        net = aekit.get_model("ae", input_shape=train.shape[1:], **options)
        dataclasses.replace(trainer, seed=seed).fit(net, train)
        for sigma in smoothing:
            scorer = aekit.get_model("ae", input_shape=train.shape[1:], **options, score_smoothing=sigma)
            scorer.load_state_dict(net.state_dict())
            scores[sigma].append(anomaly_scores(scorer, scored))
    return scores


def one_class(quick: bool) -> dict:
    """784-256-128-32 ELU MLP per digit, 30 epochs; the anomaly score the squared error of the residual image
    blurred by a Gaussian (score_smoothing, in pixels; 0 = plain squared error), averaged over the models of one
    or more seeds. The blur and the number of models are chosen by the mean ROC AUC on a validation split: 10% of
    the training images (every digit), scored by models trained on the other 90% of the digit's images. Then each
    digit's models are trained on all its training images and score the 10,000 test images."""
    digits = [0, 1] if quick else list(range(10))
    trainer = aekit.Trainer(epochs=1 if quick else 30, batch_size=128, lr=1e-3, val_fraction=0.0, progress=False)
    options = {"code_size": 32, "hidden": (256, 128), "activation": "elu"}
    train, test = (aekit.load_dataset("mnist", split, DATA_DIR) for split in ("train", "test"))
    order = torch.randperm(len(train.x), generator=torch.Generator().manual_seed(0))
    held, kept = order[: len(order) // 10], order[len(order) // 10 :]
    validation: dict[tuple[float, int], list[float]] = {(sigma, m): [] for sigma in SMOOTHING for m in MEMBERS}
    for digit in digits:
        scores = one_class_scores(train.x[kept][train.y[kept] == digit], train.x[held], trainer, options, max(MEMBERS))
        for sigma, m in validation:
            validation[sigma, m].append(roc_auc_score((train.y[held] != digit).numpy(), np.mean(scores[sigma][:m], axis=0)))
    mean_validation = {key: float(np.mean(aucs)) for key, aucs in validation.items()}
    sigma, members = max(mean_validation, key=mean_validation.get)
    per_digit = {}
    for digit in digits:
        scores = one_class_scores(train.x[train.y == digit], test.x, trainer, options, members, smoothing=(sigma,))
        per_digit[str(digit)] = float(roc_auc_score((test.y != digit).numpy(), np.mean(scores[sigma], axis=0)))
    return {"value": float(np.mean(list(per_digit.values()))), "per_digit": per_digit, "score_smoothing": sigma, "members": members,
            "validation_roc_auc": {f"smoothing {s}, members {m}": v for (s, m), v in mean_validation.items()}}


PARTS = {
    "deep_ae": ("deep_ae_test_sse", deep_ae),
    "vae": ("vae_test_log_likelihood", vae),
    "iwae": ("iwae_test_log_likelihood", lambda quick, **recipe: vae(quick, samples=50, **recipe)),
    "one_class": ("mnist_one_class_mean_auroc", one_class),
}


def table(record: dict) -> list[str]:
    lines = ["| number | aekit | goal | published | met | command | wall time | machine |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, (sense, goal, source) in PUBLISHED.items():
        entry = record.get(key)
        if entry is None:
            lines.append(f"| {key} | not run | {sense} {goal} | {source} | — | — | — | — |")
            continue
        met = entry["value"] <= goal if sense == "<=" else entry["value"] >= goal
        lines.append(f"| {key} | {entry['value']:.3f} | {sense} {goal} | {source} | {'yes' if met else '**no**'} | `{entry['command']}` | {entry['wall_s']:.0f} s | {entry['machine']} |")
    return lines


def candidates_table(record: dict) -> list[str]:
    """Each part's candidates, the one that stands (the best on the validation split) first."""
    lines = []
    for key, metric, columns in (("deep_ae_test_sse", "validation_sse", ("noise", "weight_decay", "loss")),
                                 ("vae_test_log_likelihood", "validation_ll", ("schedule", "activation", "epochs")),
                                 ("iwae_test_log_likelihood", "validation_ll", ("schedule", "activation", "epochs", "lr", "init"))):
        candidates = sorted(record.get(key, {}).get("candidates", []), key=lambda c: c[metric], reverse=CHOOSE_BY[metric] is max)
        if candidates:
            lines += [f"{key} candidates, chosen by the {metric.replace('_', ' ')} alone:", "",
                      "| " + " | ".join(columns) + " | validation | test | best epoch |", "| --- " * (len(columns) + 3) + "|",
                      *(f"| {' | '.join(str(c.get(name, RECORDED_BEFORE.get(name, '—'))) for name in columns)} | {c[metric]:.3f} | {c['value']:.3f} | {c['best_epoch']} of {c['epochs']} |" for c in candidates), ""]
    return lines


def one_class_table(record: dict) -> list[str]:
    """The one-class candidates' validation ROC AUC (the highest stands)."""
    entry = record.get("mnist_one_class_mean_auroc", {})
    if "validation_roc_auc" not in entry:
        return []
    lines = [f"One-class candidates, chosen by the validation ROC AUC alone (chosen: smoothing {entry['score_smoothing']}, {entry.get('members', 1)} model(s)):", "",
             "| candidate | validation ROC AUC |", "| --- | --- |"]
    return lines + [f"| {name} | {value:.4f} |" for name, value in entry["validation_roc_auc"].items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(PARTS), help="parts to run: " + ", ".join(PARTS))
    parser.add_argument("--quick", action="store_true", help="1 epoch on 5,000 images, 2 digits: checks the script, not the numbers")
    parser.add_argument("--deep-noise", type=float, default=0.1, help="deep_ae candidate: Gaussian input noise")
    parser.add_argument("--deep-weight-decay", type=float, default=0.1, help="deep_ae candidate: AdamW weight decay")
    parser.add_argument("--likelihood-epochs", type=int, default=100, help="vae, iwae: training epochs")
    parser.add_argument("--likelihood-schedule", default="constant", choices=("constant", "cosine"), help="vae, iwae candidate: learning rate schedule")
    parser.add_argument("--likelihood-activation", default="tanh", help="vae, iwae candidate: hidden activation")
    parser.add_argument("--likelihood-lr", type=float, default=1e-3, help="vae, iwae candidate: learning rate")
    parser.add_argument("--init", help="vae, iwae: start from the weights of a model saved with --save (e.g. the VAE, to train on as an IWAE)")
    parser.add_argument("--save", help="vae, iwae: also save the trained model (weights and config) in this folder")
    parser.add_argument("--deep-loss", default="mse", choices=("mse", "bce"), help="deep_ae candidate: training loss")
    parser.add_argument("--table", action="store_true", help="only rewrite fidelity.md from fidelity.json")
    args = parser.parse_args()
    path = RESULTS.with_name("fidelity_quick.json") if args.quick else RESULTS
    for part in [] if args.table else args.only.split(","):
        key, run = PARTS[part]
        began = time.perf_counter()
        command = f"python benchmarks/fidelity.py --only {part}" + (" --quick" if args.quick else "")
        if part == "deep_ae":
            entry = deep_ae(args.quick, args.deep_noise, args.deep_weight_decay, args.deep_loss)
            command += f" --deep-noise {args.deep_noise} --deep-weight-decay {args.deep_weight_decay} --deep-loss {args.deep_loss}"
        elif part in ("vae", "iwae"):
            entry = run(args.quick, epochs=args.likelihood_epochs, schedule=args.likelihood_schedule, activation=args.likelihood_activation,
                        lr=args.likelihood_lr, init=args.init, save=args.save)
            command += f" --likelihood-epochs {args.likelihood_epochs} --likelihood-schedule {args.likelihood_schedule} --likelihood-activation {args.likelihood_activation}"
            command += f" --likelihood-lr {args.likelihood_lr}" + (f" --init {args.init}" if args.init else "") + (f" --save {args.save}" if args.save else "")
        else:
            entry = run(args.quick)
        entry = {**entry, "command": command, "wall_s": round(time.perf_counter() - began, 1), "machine": machine(), "recipe": run.__doc__ if part != "iwae" else "vae() with an IWAE, k = 50: " + vae.__doc__}
        record = json.loads(path.read_text()) if path.exists() else {}  # read now: a part run beside this one may have written
        for metric, best in CHOOSE_BY.items():  # candidates of one recipe: the best on the validation split stands
            if metric in entry:
                candidates = [c for c in record.get(key, {}).get("candidates", []) if c["command"] != command] + [entry]
                entry = {**best(candidates, key=lambda c: c[metric]), "candidates": candidates}
        record[key] = entry
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(part, record[key]["value"], file=sys.stderr, flush=True)
    record = json.loads(path.read_text()) if path.exists() else {}
    note = "Wall times on a 2-core CPU; a run with 1 torch thread shared the machine with another run."
    write(path.with_suffix(".md").name, ["# Fidelity: the published numbers", "", f"From `{path.name}`. {note}", "", *table(record), "", *candidates_table(record), "", *one_class_table(record)])


if __name__ == "__main__":
    main()
