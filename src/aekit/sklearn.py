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

from .apps.common import batched
from .checkpoint import atomic_write, load, read_json, save
from .errors import CheckpointError, ConfigError
from .registry import get_model, model_class
from .training import History, Trainer

ESTIMATOR = "estimator.json"


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
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=True, ensure_min_samples=1)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        cls = model_class(self.model)
        # unbounded data: a squared error, as a Gaussian likelihood for models that need one (the VAE)
        loss = self.loss or ("gaussian" if getattr(cls, "requires_likelihood", False) else "mse")
        options = {
            "input_shape": (X.shape[1],),
            "code_size": self.code_size,
            "hidden": tuple(self.hidden),
            "activation": self.activation,
            "loss": loss,
            "output_activation": self.output_activation,
            **(self.model_options or {}),
        }
        trainer = Trainer(
            epochs=self.epochs,
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
            history = trainer.fit(model, torch.from_numpy(np.asarray(X, dtype=np.float32)))
        self.model_ = model.cpu().eval()
        self.history_ = history
        return X

    def _check(self, X: Any) -> torch.Tensor:
        check_is_fitted(self, "model_")
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return torch.from_numpy(np.asarray(X, dtype=np.float32))

    def _batched(self, fn, x: torch.Tensor) -> np.ndarray:
        return batched(fn, x).double().numpy()

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
        params = dict(state["params"])
        params["hidden"] = tuple(params["hidden"])
        try:
            estimator = cls(**params)
        except TypeError as exc:
            raise CheckpointError(f"{path / ESTIMATOR}: parameters do not match {cls.__name__} ({exc}).") from None
        fitted = state["fitted"]
        estimator.model_ = load(path)
        estimator.n_features_in_ = int(fitted["n_features_in_"])
        estimator.history_ = History(fitted["history_"])
        if "feature_names_in_" in fitted:
            estimator.feature_names_in_ = np.asarray(fitted["feature_names_in_"], dtype=object)
        estimator._restore_fitted_state(fitted)
        return estimator

    def _fitted_state(self) -> dict[str, Any]:
        return {}

    def _restore_fitted_state(self, fitted: dict[str, Any]) -> None:
        pass


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

    def fit(self, X: Any, y: Any = None) -> "AutoencoderTransformer":
        """Train the autoencoder on ``X`` (n_samples, n_features); ``y`` is ignored."""
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
    """Outliers are the samples an autoencoder reconstructs worst (the VAE: lowest ELBO).

    Follows scikit-learn's outlier-detector convention (as ``IsolationForest``):
    :meth:`score_samples` is higher for normal samples (minus the reconstruction
    error; the ELBO in nats for the VAE), :meth:`decision_function` is
    ``score_samples - offset_`` (negative for outliers), :meth:`predict` is +1
    for inliers and -1 for outliers. ``offset_`` is the ``contamination``
    quantile of the training scores; ``threshold_`` is the same cut on the
    anomaly-score scale (``-offset_``: samples whose reconstruction error
    exceeds it are outliers).

    Parameters
    ----------
    contamination : float in (0, 0.5]
        Expected share of outliers in the training data.
    (all other parameters as :class:`AutoencoderTransformer`)
    """

    def __init__(self, model: str = "ae", code_size: int = 2, hidden: tuple[int, ...] = (64,), activation: str = "relu", loss: str | None = None, output_activation: str = "identity", model_options: dict[str, Any] | None = None, epochs: int = 50, batch_size: int = 128, lr: float = 1e-3, weight_decay: float = 0.0, val_fraction: float = 0.0, device: str = "cpu", random_state: int | np.random.RandomState | None = None, verbose: bool = False, contamination: float = 0.1) -> None:  # fmt: skip
        super().__init__(model, code_size, hidden, activation, loss, output_activation, model_options, epochs, batch_size, lr, weight_decay, val_fraction, device, random_state, verbose)  # fmt: skip
        self.contamination = contamination

    def fit(self, X: Any, y: Any = None) -> "AutoencoderOutlierDetector":
        """Train on ``X`` (unlabelled; ``y`` is ignored) and set the threshold from ``contamination``."""
        if not (isinstance(self.contamination, (int, float)) and 0 < self.contamination <= 0.5):
            raise ConfigError(f"contamination must be in (0, 0.5], got {self.contamination!r}.")
        X = self._fit(X)
        scores = self._scores(torch.from_numpy(np.asarray(X, dtype=np.float32)))
        self.offset_ = float(np.percentile(scores, 100 * self.contamination))
        self.threshold_ = -self.offset_
        return self

    def _scores(self, x: torch.Tensor) -> np.ndarray:
        if hasattr(self.model_, "elbo"):
            torch.manual_seed(0)  # the ELBO is sampled: a fixed seed keeps scores reproducible
            return self._batched(lambda b: self.model_.elbo(b, samples=10), x)
        return -self._reconstruction_error(x)

    def score_samples(self, X: Any) -> np.ndarray:
        """Normality per sample: minus the reconstruction error (the ELBO for the VAE)."""
        x = self._check(X)
        with torch.random.fork_rng(devices=[]):
            return self._scores(x)

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples(X) - offset_``: negative for outliers."""
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """+1 for inliers, -1 for outliers."""
        return np.where(self.decision_function(X) >= 0, 1, -1)

    def _fitted_state(self) -> dict[str, Any]:
        return {"offset_": self.offset_, "threshold_": self.threshold_}

    def _restore_fitted_state(self, fitted: dict[str, Any]) -> None:
        self.offset_, self.threshold_ = float(fitted["offset_"]), float(fitted["threshold_"])


__all__ = ["AutoencoderOutlierDetector", "AutoencoderTransformer"]
