"""scikit-learn estimators: thin adapters over the registered models and the one training loop.

>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.preprocessing import StandardScaler
>>> from aekit.sklearn import AutoencoderTransformer
>>> pipe = make_pipeline(StandardScaler(), AutoencoderTransformer(code_size=2, epochs=20, random_state=0))
>>> codes = pipe.fit_transform(X)                                   # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, OutlierMixin, TransformerMixin
from sklearn.utils import check_array, check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from scipy import sparse

from .apps.common import batched
from .data.categories import check_categories, encode_frame
from .data.text import as_bags, bag_length
from .apps.detect import SCORE_BATCH, anomaly_scores, check_rate, conformal_pvalues, conformal_threshold, feature_contributions
from .checkpoint import atomic_write, load, read_json, save
from .errors import CheckpointError, ConfigError, DataError
from .validation import positive_int
from .defaults import BATCH_SIZE, CALIBRATION_ROWS, LR, MEMBER_ROWS, MEMBERS, STEPS, TABULAR_CALIBRATION, RowPlan, epochs_for, fill_tabular, row_loss
from .registry import get_model, model_class
from .training import History, Trainer

ESTIMATOR = "estimator.json"



def encode_categories(X: Any, categories: dict[str, list[str]] | None) -> tuple[Any, dict[str, list[str]] | None]:
    """A DataFrame's category columns as indicator columns named ``column=value`` (:mod:`aekit.data.categories`):
    ``(frame of numbers, categories)``. ``categories``: the fitted ones, or None to learn them (columns whose
    cells are mostly words). Anything but a DataFrame passes through (no categories)."""
    if not hasattr(X, "columns") or not hasattr(X, "dtypes"):
        return X, categories
    import pandas as pd

    columns = [str(c) for c in X.columns]
    missing = [c for c in categories or {} if c not in columns]
    if missing:
        raise DataError(f"X has no column {missing[0]!r}, a category column when the estimator was fitted; pass the columns it was fitted on.")
    x, names, found = encode_frame(X.set_axis(columns, axis=1), categories, lambda r, c: f"row {r}, column {c!r}")
    return pd.DataFrame(x, columns=names, index=X.index), found if categories is None else categories


class _AutoencoderEstimator(BaseEstimator):
    """What the transformer and the outlier detector share: the parameters, fitting, saving."""

    def __init__(
        self,
        model: str = "ae",
        code_size: int = 2,
        hidden: tuple[int, ...] = (64,),
        activation: str = "relu",
        loss: str | None = None,
        output_activation: str = "identity",
        model_options: dict[str, Any] | None = None,
        epochs: int = 50,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        val_fraction: float = 0.0,
        device: str = "cpu",
        random_state: int | np.random.RandomState | None = None,
        verbose: bool = False,
    ) -> None:
        self.model = model
        self.code_size = code_size
        self.hidden = hidden
        self.activation = activation
        self.loss = loss
        self.output_activation = output_activation
        self.model_options = model_options
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.val_fraction = val_fraction
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- fitting -------------------------------------------------------------------------------

    def _fit(self, X: Any) -> np.ndarray:
        X, self.categories_ = encode_categories(X, None)
        X = validate_data(self, X, accept_sparse="csr", dtype=[np.float64, np.float32], reset=True, ensure_min_samples=1)
        rng = check_random_state(self.random_state)
        sizes = {"code_size": self.code_size, "hidden": tuple(self.hidden)}
        if sparse.issparse(X):  # documents (a TF-IDF or count matrix): bags of words, never a dense matrix
            self.bag_length_ = bag_length(X)
            options = {"input_shape": (2, self.bag_length_), **sizes, "activation": self.activation, "architecture": "bow", "vocabulary": X.shape[1], **(self.model_options or {})}
            self._train(options, self._bags(X), self.epochs, rng)
            return X
        self.bag_length_ = None
        options = self._model_options(X.shape[1], sizes)
        self._train(options, torch.from_numpy(np.asarray(X, dtype=np.float32)), self.epochs, rng)
        return X

    def _bags(self, X: Any) -> torch.Tensor:
        """A sparse matrix's rows as bags of (column, value) pairs (:mod:`aekit.data.text`)."""
        if X.min() < 0:
            raise ValueError("a sparse matrix is read as word counts or weights, which cannot be negative; scale it to non-negative values.")
        return torch.from_numpy(as_bags(X, self.bag_length_)[0])

    def _model_options(self, n_features: int, sizes: dict[str, Any]) -> dict[str, Any]:
        cls = model_class(self.model)
        # unbounded data: a squared error, as a Gaussian likelihood for models that need one (the VAE)
        loss = self.loss or row_loss(cls)
        options = {"input_shape": (n_features,), **sizes, "activation": self.activation, "loss": loss, "output_activation": self.output_activation}
        fixed = getattr(cls, "fixed_options", {})  # a model with fixed layers (linear, recirculation) sets these itself
        return {**{k: v for k, v in options.items() if k not in fixed}, **(self.model_options or {})}

    def _train(self, options: dict[str, Any], data: torch.Tensor, epochs: int, rng: np.random.RandomState) -> None:
        seed = int(rng.randint(np.iinfo(np.int32).max))
        trainer = Trainer(
            epochs=epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            val_fraction=self.val_fraction,
            device=self.device,
            seed=seed,
            progress=bool(self.verbose),
        )
        with torch.random.fork_rng(devices=[]):  # seeds aekit's work without touching the caller's RNG
            torch.manual_seed(seed)
            model = get_model(self.model, **options)
            history = trainer.fit(model, data)
        self.model_ = model.cpu().eval()
        self.history_ = history

    def _check(self, X: Any) -> torch.Tensor:
        check_is_fitted(self, "model_")
        documents = getattr(self, "bag_length_", None) is not None
        X, _ = encode_categories(X, getattr(self, "categories_", None) or {})
        X = validate_data(self, X, accept_sparse="csr" if documents else False, dtype=[np.float64, np.float32], reset=False)
        if documents:
            return self._bags(sparse.csr_matrix(X))
        return torch.from_numpy(np.asarray(X, dtype=np.float32))

    def _batched(self, fn, x: torch.Tensor) -> np.ndarray:
        """``fn`` over fixed-size (padded) batches: a row's result never depends on which rows came with it."""
        return batched(fn, x, SCORE_BATCH, padded=True).double().numpy()

    def _reconstruction_error(self, x: torch.Tensor) -> np.ndarray:
        """Squared error per sample, summed over features."""
        return self._batched(lambda b: (self.model_(b).x_hat - b).pow(2).flatten(1).sum(1), x)

    # -- saving without pickle -------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Save to a folder: the model as an aekit checkpoint, the estimator as JSON. No pickle."""
        check_is_fitted(self, "model_")
        path = Path(path)
        save(self.model_, path)
        fitted = {"n_features_in_": self.n_features_in_, "history_": self.history_.records, **self._fitted_state()}
        if hasattr(self, "feature_names_in_"):
            fitted["feature_names_in_"] = [str(n) for n in self.feature_names_in_]
        if getattr(self, "categories_", None):
            fitted["categories_"] = self.categories_
        state = {"class": type(self).__name__, "params": self.get_params(), "fitted": fitted}
        atomic_write(path / ESTIMATOR, json.dumps(state, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "_AutoencoderEstimator":
        """Restore what :meth:`save` wrote."""
        path = Path(path)
        state = read_json(path / ESTIMATOR, "not a saved aekit estimator (no estimator.json)")
        if not isinstance(state, dict) or state.get("class") != cls.__name__:
            raise CheckpointError(f"{path} holds a {state.get('class') if isinstance(state, dict) else 'malformed'} estimator, not a {cls.__name__}.")
        try:
            params = dict(state["params"])
            params["hidden"] = tuple(params["hidden"]) if isinstance(params["hidden"], list) else params["hidden"]
            estimator = cls(**params)
            fitted = state["fitted"]
            estimator.n_features_in_ = positive_int("n_features_in_", fitted["n_features_in_"])
            if not (isinstance(fitted["history_"], list) and all(isinstance(r, dict) for r in fitted["history_"])):
                raise ValueError("history_ must be a list of records")
            estimator.history_ = History(fitted["history_"])
            if "feature_names_in_" in fitted:
                if not (isinstance(fitted["feature_names_in_"], list) and all(isinstance(n, str) for n in fitted["feature_names_in_"])):
                    raise ValueError("feature_names_in_ must be a list of names")
                estimator.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
            estimator.categories_ = check_categories(fitted["categories_"], "categories_") if "categories_" in fitted else None
            estimator._restore_fitted_state(fitted)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # ConfigError is a ValueError too
            raise CheckpointError(f"{path / ESTIMATOR} is not what aekit wrote ({type(exc).__name__}: {str(exc)[:100]}); save the estimator again.") from None
        estimator.model_ = load(path)
        return estimator

    def _fitted_state(self) -> dict[str, Any]:
        return {"bag_length_": getattr(self, "bag_length_", None)}

    def _restore_fitted_state(self, fitted: dict[str, Any]) -> None:
        self.bag_length_ = fitted.get("bag_length_")
        if self.bag_length_ is not None:
            positive_int("bag_length_", self.bag_length_)


class AutoencoderTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin, _AutoencoderEstimator):
    """Reduce features to an autoencoder's code, scikit-learn style.

    Parameters
    ----------
    model : str
        A registered aekit model (``"ae"``, ``"vae"``, ``"sparse"``, ...).
    code_size : int
        Number of output features (the code size).
    hidden : tuple of int
        Encoder hidden layer sizes; the decoder mirrors them.
    activation, output_activation : str
        Hidden and reconstruction activations (``identity`` output suits standardised data).
    loss : str, optional
        Reconstruction loss; default ``mse`` (``gaussian`` for the VAE).
    model_options : dict, optional
        Any other option of the model, e.g. ``{"beta": 4.0}`` or ``{"noise": "masking:0.2"}``.
    epochs, batch_size, lr, weight_decay, val_fraction, device :
        Training settings (see :class:`aekit.Trainer`).
    random_state : int, RandomState or None
        Seeds the initial weights, shuffling and any noise; an int gives identical fits.
    verbose : bool
        Show a progress bar.

    Attributes
    ----------
    model_ : torch.nn.Module
        The fitted aekit model.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had string column names.
    history_ : aekit.History
        Per-epoch training metrics.

    Examples
    --------
    >>> est = AutoencoderTransformer(code_size=2, epochs=20, random_state=0)   # doctest: +SKIP
    >>> Z = est.fit_transform(X)          # the code; the posterior mean for the VAE
    >>> X_back = est.inverse_transform(Z)
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # a sparse matrix is read as documents' word counts or weights
        return tags

    def fit(self, X: Any, y: Any = None) -> "AutoencoderTransformer":
        """Train the autoencoder on ``X`` (n_samples, n_features); ``y`` is ignored. A scipy sparse matrix
        (non-negative: word counts or TF-IDF weights) trains a document model on its rows as bags of words."""
        self._fit(X)
        return self

    @property
    def _n_features_out(self) -> int:
        return self.code_size

    def transform(self, X: Any) -> np.ndarray:
        """The codes of ``X``: shape (n_samples, code_size)."""
        return self._batched(self.model_.encode, self._check(X))

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Decode codes of shape (n_samples, code_size) back to feature space."""
        check_is_fitted(self, "model_")
        Z = check_array(X, dtype=[np.float64, np.float32])
        if Z.shape[1] != self.code_size:
            raise ValueError(f"inverse_transform expects codes with {self.code_size} features, got {Z.shape[1]}.")
        return self._batched(self.model_.decode, torch.from_numpy(Z.astype(np.float32)))

    def score(self, X: Any, y: Any = None) -> float:
        """Negative mean squared reconstruction error per feature (higher is better)."""
        x = self._check(X)
        return -float(self._reconstruction_error(x).mean() / x.shape[1])


class AutoencoderOutlierDetector(OutlierMixin, _AutoencoderEstimator):
    """Outlier detection with autoencoders whose defaults adapt to the data, scikit-learn style.

    By default an ensemble of ``members`` small autoencoders (the registered
    ``ensemble`` model), each trained on its own random subsample of at most
    ``max_rows`` rows, on inputs standardised with statistics learnt at fit
    time and kept in the model; sizes follow the data (code ``ceil(sqrt(d))``,
    one hidden layer of ``2 d`` units, at most 256), and so does the training
    budget (about ``steps`` optimiser steps, whatever the number of rows).
    A sample's anomaly score combines its reconstruction error and the
    density of its code (:meth:`aekit.models.AutoencoderEnsemble.anomaly_score`).

    Thresholds need no labels: ``calibration_fraction`` of the rows is held
    out from training and scored; a new sample is flagged when its conformal
    p-value (the share of calibration scores at or above its score, Bates et
    al. 2023) is at most ``false_alarm_rate``, which keeps false alarms on
    normal data at or below that rate. Set ``contamination`` instead to flag
    that share of the training rows.

    Follows scikit-learn's outlier-detector convention (as ``IsolationForest``):
    :meth:`score_samples` is higher for normal samples (minus the anomaly
    score), :meth:`decision_function` is ``score_samples - offset_`` (negative
    for outliers), :meth:`predict` is +1 for inliers and -1 for outliers.

    Parameters
    ----------
    model : str
        A registered aekit model; ``"ensemble"`` by default. Others (``"ae"``,
        ``"vae"``, ...) train on all training rows.
    code_size, hidden, epochs : int, tuple or "auto"
        Sizes and budget; ``"auto"`` chooses them from the data as above.
    members, max_rows, steps : int
        Ensemble members, rows per member's subsample, optimiser steps for ``epochs="auto"``.
    input_scaling : str or None
        ``"standard"`` or ``"robust"`` scaling learnt at fit time and stored in the model.
    false_alarm_rate : float in (0, 1)
        The share of normal samples that may be flagged (conformal threshold).
    calibration_fraction : float in [0, 0.5]
        Share of the rows held out to calibrate the threshold.
    contamination : float in (0, 0.5], optional
        If given, flag this share of the training rows instead.
    (the other parameters as :class:`AutoencoderTransformer`)

    Attributes
    ----------
    model_ : torch.nn.Module
        The fitted aekit model; it takes raw rows (its scaling is inside).
    calibration_scores_ : ndarray of shape (n_calibration,)
        Anomaly scores of the held-out calibration rows.
    offset_, threshold_ : float
        The cut on :meth:`score_samples` and on the anomaly score (``-offset_``).
    """

    def __init__(self, model: str = "ensemble", code_size: int | str = "auto", hidden: tuple[int, ...] | str = "auto", activation: str = "relu", loss: str | None = None, output_activation: str = "identity", model_options: dict[str, Any] | None = None, epochs: int | str = "auto", batch_size: int = BATCH_SIZE, lr: float = LR, weight_decay: float = 0.0, val_fraction: float = 0.0, device: str = "cpu", random_state: int | np.random.RandomState | None = None, verbose: bool = False, members: int = MEMBERS, max_rows: int = MEMBER_ROWS, steps: int = STEPS, input_scaling: str | None = "standard", false_alarm_rate: float = 0.05, calibration_fraction: float = TABULAR_CALIBRATION, contamination: float | None = None) -> None:  # fmt: skip
        super().__init__(model, code_size, hidden, activation, loss, output_activation, model_options, epochs, batch_size, lr, weight_decay, val_fraction, device, random_state, verbose)  # fmt: skip
        self.members = members
        self.max_rows = max_rows
        self.steps = steps
        self.input_scaling = input_scaling
        self.false_alarm_rate = false_alarm_rate
        self.calibration_fraction = calibration_fraction
        self.contamination = contamination

    def fit(self, X: Any, y: Any = None) -> "AutoencoderOutlierDetector":
        """Train on ``X`` (unlabelled raw rows; ``y`` is ignored), calibrate and set the threshold."""
        if self.contamination is not None and not (isinstance(self.contamination, (int, float)) and 0 < self.contamination <= 0.5):
            raise ConfigError(f"contamination must be in (0, 0.5] or None, got {self.contamination!r}.")
        for name in ("steps", "members", "max_rows"):
            positive_int(name, getattr(self, name))
        if not (isinstance(self.calibration_fraction, (int, float)) and 0 <= self.calibration_fraction <= 0.5):
            raise ConfigError(f"calibration_fraction must be in [0, 0.5], got {self.calibration_fraction!r}.")
        if sparse.issparse(X):
            raise ConfigError("AutoencoderOutlierDetector reads dense rows; for documents, train a document model (aekit train on the text, or AutoencoderTransformer on the sparse matrix) and score with aekit detect.")
        X, self.categories_ = encode_categories(X, None)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=True, ensure_min_samples=2)
        rng = check_random_state(self.random_state)
        n, d = X.shape
        if self.contamination is None:
            rate = check_rate(self.false_alarm_rate)
            if min(int(round(self.calibration_fraction * n)), n - 1) < 1:
                raise ConfigError(f"{n} rows leave none to calibrate the threshold; raise calibration_fraction or set contamination.")
        options = self._plan_options(d)
        plan = RowPlan(self.calibration_fraction, options.get("members") if self.model == "ensemble" else None, self.max_rows, CALIBRATION_ROWS)
        calibration, used = plan.split(n, int(rng.randint(np.iinfo(np.int32).max)))
        data = torch.from_numpy(np.asarray(X, dtype=np.float32))[used]
        epochs = epochs_for(self.steps, len(data), self.batch_size) if self.epochs == "auto" else self.epochs
        self._train(options, data, epochs, rng)
        self.calibration_scores_ = anomaly_scores(self.model_, X[calibration]) if len(calibration) else np.empty(0)
        if self.contamination is None:
            self.threshold_ = conformal_threshold(self.calibration_scores_, rate)
        else:
            self.threshold_ = float(np.percentile(anomaly_scores(self.model_, X), 100 * (1 - self.contamination)))
        self.offset_ = -self.threshold_
        return self

    def _plan_options(self, d: int) -> dict[str, Any]:
        """The model's options for rows of ``d`` features, "auto" sizes resolved (aekit.defaults)."""
        given = {"code_size": self.code_size, "hidden": self.hidden}
        options = self._model_options(d, {k: tuple(v) if k == "hidden" else v for k, v in given.items() if not (isinstance(v, str) and v == "auto")})
        fill_tabular(model_class(self.model), d, options, self.input_scaling, self.members)
        return options

    def score_samples(self, X: Any) -> np.ndarray:
        """Normality per sample (higher = more normal): minus the anomaly score."""
        x = self._check(X)
        return -anomaly_scores(self.model_, x)

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for outliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """+1 for inliers, -1 for outliers."""
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def pvalues(self, X: Any) -> np.ndarray:
        """Conformal p-values against the calibration scores: small = unlike the normal rows."""
        check_is_fitted(self, "calibration_scores_")
        if not len(self.calibration_scores_):
            raise ConfigError("this detector was fitted with calibration_fraction=0, so it has no calibration scores.")
        return conformal_pvalues(self.calibration_scores_, -self.score_samples(X))

    def feature_contributions(self, X: Any) -> np.ndarray:
        """Each feature's share of each sample's reconstruction error: shape (n_samples, n_features), rows sum to 1."""
        x = self._check(X)
        return feature_contributions(self.model_, x).reshape(len(x), -1)

    def _fitted_state(self) -> dict[str, Any]:
        return {"offset_": self.offset_, "threshold_": self.threshold_, "calibration_scores_": self.calibration_scores_.tolist()}

    def _restore_fitted_state(self, fitted: dict[str, Any]) -> None:
        for key in ("offset_", "threshold_"):
            if not (isinstance(fitted[key], (int, float)) and not isinstance(fitted[key], bool) and np.isfinite(fitted[key])):
                raise ValueError(f"{key} must be a finite number, got {fitted[key]!r}")
        self.offset_, self.threshold_ = float(fitted["offset_"]), float(fitted["threshold_"])
        scores = fitted.get("calibration_scores_", [])
        if not (isinstance(scores, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores)):
            raise ValueError("calibration_scores_ must be a list of numbers")
        self.calibration_scores_ = np.asarray(scores, dtype=np.float64)


__all__ = ["AutoencoderOutlierDetector", "AutoencoderTransformer"]
