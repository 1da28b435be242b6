"""Codes as features: a linear probe on the codes beside the raw inputs and PCA of the same size."""

from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from ..data import Dataset
from ..errors import DataError
from .common import encode


def probe(model: nn.Module, train: Dataset, test: Dataset, max_iter: int = 500, seed: int = 0) -> dict[str, float]:
    """Test accuracy of logistic regression trained on ``train``'s features, for codes, raw inputs and PCA codes.

    Every classifier is ``StandardScaler`` + ``LogisticRegression`` with the
    same settings; PCA has as many components as the model's code (at most the rows and features it is fitted on).
    """
    if train.y is None or test.y is None:
        raise DataError("probing needs labels on the training and test data.")
    if len(np.unique(train.y.numpy())) < 2:
        raise DataError(f"probing needs at least two classes among the training labels of {train.name}.")
    raw_train, raw_test = train.x.flatten(1).numpy(), test.x.flatten(1).numpy()
    codes = (encode(model, train.x), encode(model, test.x))
    # as many components as the code has units, as far as the training rows and features allow
    pca = PCA(min(codes[0].shape[1], *raw_train.shape), random_state=seed).fit(raw_train)
    features = {
        "codes": codes,
        "raw": (raw_train, raw_test),
        "pca": (pca.transform(raw_train), pca.transform(raw_test)),
    }
    accuracy = {}
    for name, (f_train, f_test) in features.items():
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter, random_state=seed))
        classifier.fit(f_train, train.y.numpy())
        accuracy[name] = float(np.mean(classifier.predict(f_test) == test.y.numpy()))
    return accuracy
