"""The ``bow`` architecture: documents as bags of words in, a distribution over the vocabulary out.

A document is a bag ``(2, length)`` of word ids and counts (:mod:`aekit.data.text`).
The network weighs each word by ``log(1 + count) * idf`` (the inverse document
frequency learnt from the training documents, :meth:`BagOfWords.adapt`): the
TF-IDF weighting under which cosine similarity of raw documents works best.
The encoder's first layer is an ``nn.EmbeddingBag``, the weighted sum of the
rows of the document's words (the product of the L2-normalised TF-IDF vector
with a ``(vocabulary, hidden)`` matrix, without forming the vector); fully
connected layers follow down to the code. The decoder is one linear layer to a
softmax over the vocabulary (as the decoders of NVDM, Miao et al. 2016, and of
the replicated-softmax model): the reconstruction loss is the cross-entropy
of the document's weighted words under it (``multinomial``,
:func:`aekit.losses.multinomial_nll`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..validation import check_range
from .architectures import Architecture, register_architecture
from .layers import activation as make_activation
from .layers import mlp

if TYPE_CHECKING:
    from .base import Autoencoder


def bag_parts(bags: Tensor) -> tuple[Tensor, Tensor]:
    """Bags ``(batch, 2, length)`` -> word ids ``(batch, length)`` (long) and their counts or weights."""
    return bags[:, 0].long(), bags[:, 1]


class BagInput(nn.Module):
    """``(batch, 2, length)`` weighted bags -> ``W^T v + b`` with ``v`` a document's L2-normalised word weights:
    ``nn.Linear(words, width)`` on the dense vector ``v``, initialised alike, without forming ``v``."""

    def __init__(self, words: int, width: int, word_dropout: float = 0.0) -> None:
        super().__init__()
        self.word_dropout = word_dropout
        self.rows = nn.EmbeddingBag(words, width, mode="sum")
        self.bias = nn.Parameter(torch.empty(width))
        bound = 1 / math.sqrt(words)  # nn.Linear's initialisation (kaiming-uniform with a = sqrt(5)) for fan-in `words`
        nn.init.uniform_(self.rows.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, bags: Tensor) -> Tensor:
        ids, weights = bag_parts(bags)
        if self.training and self.word_dropout:  # each document keeps a share of its words drawn from U(1 - word_dropout, 1)
            keep = 1 - self.word_dropout * torch.rand(len(weights), 1, device=weights.device)
            weights = weights * (torch.rand_like(weights) < keep)
        weights = F.normalize(weights.float(), dim=1)  # an empty document stays all zeros
        return self.rows(ids, per_sample_weights=weights.to(self.rows.weight.dtype)) + self.bias


@register_architecture("bow")
class BagOfWords(Architecture):
    """Documents: an ``nn.EmbeddingBag`` over TF-IDF-weighted words, ``hidden`` layers, the code; a softmax
    decoder over the vocabulary.

    Parameters
    ----------
    vocabulary : list of str or int
        The words (saved with the model, so that a loaded model reads raw text:
        :func:`aekit.apps.documents.text_bags`), or only their number for
        columns without words (a scikit-learn sparse matrix).
    word_dropout : float
        While training, each document keeps each of its words with a probability drawn for it from
        ``U(1 - word_dropout, 1)``: the encoder learns to place a part of a document (a short query)
        where the whole one lies. The defaults (one hidden layer of 1000, ``word_dropout=0.5``) were chosen
        on a validation split of 20 Newsgroups' training posts: precision@100 of 64 bits 0.525 against 0.471
        for two layers of 500 without dropout (benchmarks/results/text.md).
    """

    defaults = {"hidden": (1000,), "activation": "relu"}
    loss = "multinomial"

    def __init__(self, vocabulary: list[str] | int = 0, word_dropout: float = 0.5) -> None:
        if isinstance(vocabulary, bool) or not (isinstance(vocabulary, int) and vocabulary > 0 or isinstance(vocabulary, (list, tuple)) and vocabulary and all(isinstance(w, str) for w in vocabulary)):
            raise ConfigError("the bow architecture needs vocabulary= (its words, e.g. a loaded document Dataset's .vocabulary) or their number.")
        super().__init__(vocabulary=vocabulary if isinstance(vocabulary, int) else list(vocabulary), word_dropout=check_range("word_dropout", word_dropout, 0, 1, high_open=True))
        self.word_dropout = word_dropout
        self.words = None if isinstance(vocabulary, int) else list(vocabulary)
        self.size = vocabulary if isinstance(vocabulary, int) else len(vocabulary)

    def check(self, model: "Autoencoder") -> None:
        if len(model.input_shape) != 2 or model.input_shape[0] != 2:
            raise ConfigError(f"the bow architecture reads bags of words, samples of shape (2, length); got input_shape={model.input_shape}. Load documents with aekit.load_dataset.")

    def output_shape(self, model: "Autoencoder") -> tuple[int, ...]:
        return (self.size,)

    def finish(self, model: nn.Module) -> None:
        if not hasattr(model, "word_weights"):  # the idf of every word, learnt in adapt
            model.register_buffer("word_weights", torch.ones(self.size))

    def adapt(self, model: "Autoencoder", x: Tensor) -> None:
        """The inverse document frequency of every word in the training bags ``x``: ``log((1 + n) / (1 + df)) + 1``
        (scikit-learn's smoothed idf)."""
        ids, counts = bag_parts(x)
        frequency = torch.zeros(self.size, dtype=torch.float64)
        frequency.index_add_(0, ids[counts > 0].cpu(), torch.ones(int((counts > 0).sum()), dtype=torch.float64))
        model.word_weights.copy_(torch.log((1 + len(x)) / (1 + frequency)) + 1)

    def scale(self, model: "Autoencoder", x: Tensor) -> Tensor:
        ids, counts = bag_parts(x)
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= self.size):
            raise ConfigError(f"these bags hold word ids outside this model's vocabulary of {self.size}; count the documents with the model's vocabulary.")
        return torch.stack([x[:, 0], torch.log1p(counts.clamp_min(0)) * model.word_weights[ids].to(x.dtype)], dim=1)

    def encoder(self, model: "Autoencoder", size: int) -> nn.Module:
        self.check(model)
        first, *rest = [*model.hidden, size]
        if not rest:  # no hidden layers: the bag's layer is the code's
            final = [] if model.code_activation == "identity" else [make_activation(model.code_activation)]
            return nn.Sequential(BagInput(self.size, first, self.word_dropout), *final)
        return nn.Sequential(BagInput(self.size, first, self.word_dropout), make_activation(model.activation), *mlp([first, *rest], model.activation, model.code_activation))

    def decoder(self, model: "Autoencoder", size: int) -> nn.Module:
        return nn.Linear(size, self.size)
