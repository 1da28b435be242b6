"""The base autoencoder: encode -> latent -> decode -> reconstruction loss.

A variant overrides only what differs:

- :meth:`Autoencoder.corrupt` — the input the encoder sees while training;
- :meth:`Autoencoder.latent` — how the encoder's output becomes the latent
  object (:mod:`aekit.models.latents`): a point, a Gaussian posterior, a
  quantiser's result; the decoder sees its ``sample()`` while training and its
  ``mode()`` otherwise;
- :meth:`Autoencoder.regularizers` — extra named loss terms, which see the
  input, the code and the latent object;
- :attr:`Autoencoder.loss_groups` / :meth:`Autoencoder.parameter_groups` —
  terms minimised over their own parameters (an adversary's);
- :meth:`Autoencoder.make_encoder` / :meth:`Autoencoder.make_decoder` /
  :meth:`Autoencoder.decode_logits` — its layers.

Training, devices and checkpoints live in the :class:`~aekit.Trainer`; a model
never calls ``backward()``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError, DataError, suggest
from ..validation import check_range, positive_int, positive_ints  # noqa: F401 (variants import them from here)
from ..losses import RECONSTRUCTION_LOSSES, smoothed_squared_error
from ..registry import register_model
from .latents import PointCode
from .architectures import Architecture, make_architecture
from .layers import activation as make_activation


@dataclass
class AEOutput:
    """What a forward pass returns.

    Attributes
    ----------
    x_hat : Tensor, shape (batch, *input_shape)
        The reconstruction (the decoder distribution's mean).
    z : Tensor, shape (batch, code_size) or (batch, channels, h, w)
        The code the decoder saw.
    losses : dict of str to scalar Tensor
        Named loss terms, each averaged over the batch; the trainer logs every one.
    loss : scalar Tensor
        The sum of the terms of the model's own parameters: what the trainer minimises.
    group_losses : dict of str to scalar Tensor
        For a model with more than one parameter group (an adversarial
        autoencoder's discriminator): the loss of each other group, minimised
        over that group's parameters only, in the same optimiser step.
    metrics : dict of str to scalar Tensor
        Numbers logged beside the losses but not minimised (a codebook's perplexity).
    """

    x_hat: Tensor
    z: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    loss: Tensor | None = None
    group_losses: dict[str, Tensor] = field(default_factory=dict)
    metrics: dict[str, Tensor] = field(default_factory=dict)


def records_config(init):
    """Wrap ``__init__`` so that every option the object was built with is kept in ``self.config``, and an
    autoencoder's layers are built (:meth:`Autoencoder.build`) once its outermost constructor has run.

    Every constructor of a subclass chain records the arguments it receives,
    defaults included, a parent's over its child's (the parent receives what
    the child passed on, e.g. a VAE's ``loss``), so ``self.config`` holds
    every option, inherited ones too, and rebuilds the object exactly.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args: Any, **kwargs: Any) -> None:
        config = self.__dict__.setdefault("config", {})
        depth = self.__dict__.get("_init_depth", 0)  # 0: the outermost constructor of the chain
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        for name, value in bound.arguments.items():
            kind = signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                config.update(value)  # options passed through **kwargs to a parent class, which records them again
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                if value:
                    raise TypeError(f"{type(self).__name__} takes its options by keyword, e.g. code_size=30.")
            elif name != "self":
                config[name] = value
        self.__dict__["_init_depth"] = depth + 1
        try:
            init(self, *args, **kwargs)
        finally:
            self.__dict__["_init_depth"] = depth
        if depth == 0 and isinstance(self, Autoencoder):
            self.build()  # after every constructor of the chain: the layers may read any attribute a variant set
            self.architecture.finish(self)  # once every layer exists, a variant's own (a discriminator) included

    return wrapper


def scores_by_reconstruction(cls: type) -> bool:
    """True for a model class whose anomaly score is the base one (the reconstruction error, which
    ``score_smoothing`` may blur), not its own (a VAE's minus ELBO, the ensemble's)."""
    return getattr(cls, "anomaly_score", None) is Autoencoder.anomaly_score


def standard_scaling(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-feature mean and standard deviation of ``x`` (n, features); constant features get scale 1."""
    scale = x.std(0, correction=0)
    return x.mean(0), torch.where(scale > 0, scale, torch.ones_like(scale))


def robust_scaling(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-feature median and interquartile range / 1.349 (the standard deviation's robust estimate for a
    normal distribution); a feature with IQR 0 falls back to its standard deviation, then to 1.

    Outliers in the training rows hardly move either number, so they stay far out after scaling.
    """
    q25, center, q75 = torch.quantile(x, torch.tensor([0.25, 0.5, 0.75], dtype=x.dtype), dim=0)
    scale = (q75 - q25) / 1.349
    fallback = standard_scaling(x)[1]
    return center, torch.where(scale > 0, scale, fallback)


INPUT_SCALINGS = {"standard": standard_scaling, "robust": robust_scaling}


@register_model("ae")
class Autoencoder(nn.Module):
    """An autoencoder on any architecture: fully connected (``mlp``, the default) or convolutional (``conv``).

    The objective (this class: plain reconstruction) and the network (the
    ``architecture``, :mod:`aekit.models.architectures`) are separate: every
    variant of this class builds on every architecture.

    Parameters
    ----------
    input_shape : sequence of int
        Shape of one sample, e.g. ``(784,)`` or ``(1, 28, 28)``.
    code_size : int
        Size of the code ``z``; below the input size the autoencoder is
        undercomplete, above it overcomplete.
    hidden : sequence of int, optional
        Hidden (fully connected) layer sizes of the encoder; the decoder mirrors
        them. Default: the architecture's (``mlp``: 1000-500-250; ``conv``: none).
    activation : str, optional
        Hidden activation (``relu``, ``elu``, ``sigmoid``, ``tanh``, ``gelu``, ...).
        Default: the architecture's (``mlp``: relu; ``conv``: elu).
    code_activation : str
        Activation of the code layer (``identity`` keeps it linear).
    output_activation : str, optional
        Activation of the reconstruction: ``sigmoid`` for data in [0, 1] (the
        default), ``identity`` for unbounded data; the loss's own when it needs
        one (``sigmoid`` for ``bce``, ``softmax`` for ``categorical``).
    loss : str, optional
        Reconstruction loss: ``mse``, ``l1``, ``bce`` (= ``bernoulli``),
        ``gaussian``, ``categorical`` or ``multinomial`` (see :mod:`aekit.losses`), summed over
        features and averaged over samples. Default: the architecture's when its output needs one
        (``multinomial`` for ``bow``), else the objective's :attr:`default_loss` (``mse``; ``bernoulli`` for VAEs).
    input_scaling : str, optional
        Per-feature scaling learnt from the training rows when training starts
        (:meth:`adapt`) and kept in the model as buffers, so that a saved or
        loaded model takes raw rows: ``standard`` (mean, standard deviation)
        or ``robust`` (median, interquartile range / 1.349). The model works,
        and its losses are computed, on the scaled values; reconstructions come
        back in the raw units. The output activation is then ``identity``.
    score_smoothing : float
        For images: the anomaly score becomes the squared error of the
        residual image blurred by a Gaussian of this many pixels
        (:func:`aekit.losses.smoothed_squared_error`); 0 (the default) scores
        by the reconstruction loss itself. On MNIST one-class, 1 pixel lifts
        the mean ROC AUC from 0.968 to 0.975 (3 seeds; benchmarks/results/fidelity.md).
    architecture : str, optional
        The network: ``mlp`` or ``conv`` (see :func:`aekit.list_architectures`);
        default: the objective's choice for the input shape (:meth:`preferred_architecture`).
    **architecture_options
        The architecture's own options, e.g. ``channels=(32, 64)``,
        ``kernel_size=3``, ``channels_last=True`` for ``conv``.

    Examples
    --------
    >>> model = Autoencoder(input_shape=(64,), code_size=8, hidden=(32,))
    >>> out = model(torch.rand(5, 64))
    >>> out.x_hat.shape, out.z.shape
    (torch.Size([5, 64]), torch.Size([5, 8]))
    """

    model_name = "ae"
    #: The reconstruction loss when neither the caller nor the architecture names one.
    default_loss = "mse"
    #: The encoder emits ``code_factor * code_size`` numbers (2 for a Gaussian latent: mean, log-variance).
    code_factor = 1
    #: True when the reconstruction loss must be a normalised likelihood (``gaussian``, ``bernoulli``), as in an ELBO.
    requires_likelihood = False
    #: Loss terms minimised over another parameter group than the model's own: term name -> group name.
    loss_groups: dict[str, str] = {}
    #: Named scalars that schedules may set while training and that the trainer logs (a VAE's ``beta``).
    scalars: tuple[str, ...] = ()
    #: The architectures this objective builds on (None: every one), and why it is limited to them.
    architectures: tuple[str, ...] | None = None
    architecture_note = ""
    #: The loss term (or ``loss``, the total) whose validation value picks the best epoch (``restore_best``).
    monitor = "loss"
    #: Prefixes of weights that a checkpoint of an earlier aekit may lack (they keep their initial values).
    optional_weights: tuple[str, ...] = ()
    #: Options that a checkpoint of an earlier aekit lacks, with what it meant (when the option's default changed from it).
    older_defaults: dict[str, object] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = records_config(cls.__init__)

    @records_config
    def __init__(
        self,
        input_shape: Sequence[int] = (784,),
        code_size: int = 30,
        hidden: Sequence[int] | None = None,
        activation: str | None = None,
        code_activation: str = "identity",
        output_activation: str | None = None,
        loss: str | None = None,
        input_scaling: str | None = None,
        score_smoothing: float = 0.0,
        architecture: str | None = None,
        **architecture_options: Any,
    ) -> None:
        super().__init__()
        self.input_shape = positive_ints("input_shape", input_shape)
        if not self.input_shape:
            raise ConfigError("input_shape must name at least one dimension, e.g. (784,).")
        self.architecture = self._make_architecture(architecture, architecture_options)
        defaults = self.architecture.defaults
        self.code_size = positive_int("code_size", code_size)
        self.hidden = positive_ints("hidden", defaults.get("hidden", ()) if hidden is None else hidden)
        self.activation, self.code_activation = activation or defaults.get("activation", "relu"), code_activation
        make_activation(self.activation)  # an unknown name fails here
        # the resolved choices, so that the saved config rebuilds this network whatever later defaults become
        resolved = {"hidden": list(self.hidden)} if hidden is None else {}
        self.config.update(architecture=self.architecture.name, activation=self.activation, **resolved, **self.architecture.options)
        loss = loss or self.architecture.loss or self.default_loss
        self.config["loss"] = loss
        if self.architecture.loss is not None and loss != self.architecture.loss:
            raise ConfigError(f"the {self.architecture.name} architecture's output needs loss={self.architecture.loss!r}, not {loss!r}; leave loss unset.")
        if loss not in RECONSTRUCTION_LOSSES:
            raise ConfigError(f"unknown loss {loss!r}.{suggest(loss, RECONSTRUCTION_LOSSES)} Choose one of: {', '.join(RECONSTRUCTION_LOSSES)}.")
        self.reconstruction = RECONSTRUCTION_LOSSES[loss]
        needed = self.reconstruction.output_activation
        if input_scaling is not None and input_scaling not in INPUT_SCALINGS:
            raise ConfigError(f"unknown input_scaling {input_scaling!r}.{suggest(str(input_scaling), INPUT_SCALINGS)} Choose one of: {', '.join(INPUT_SCALINGS)}, or None.")
        if input_scaling is not None and needed == "sigmoid":
            raise ConfigError(f"loss={loss!r} needs data in [0, 1], which scaled inputs are not; use loss='mse' or 'gaussian' with input_scaling.")
        self.input_scaling = input_scaling
        output_activation = output_activation or needed or ("identity" if input_scaling else "sigmoid")
        if needed is not None and output_activation != needed:
            raise ConfigError(f"loss={loss!r} needs output_activation={needed!r} (got {output_activation!r}).")
        self.n_features = math.prod(self.input_shape)
        #: The shape of a reconstruction: the input's, or the architecture's own (a document's word distribution).
        self.output_shape = self.architecture.output_shape(self)
        self.score_smoothing = check_range("score_smoothing", score_smoothing, 0.0)
        if self.score_smoothing and len(self.input_shape) < 2:
            raise ConfigError(f"score_smoothing blurs the residual image, so it needs an image input_shape such as (1, 28, 28), got {self.input_shape}.")
        if self.score_smoothing and not scores_by_reconstruction(type(self)):
            raise ConfigError(f"the {self.model_name!r} model scores anomalies its own way (see its anomaly_score); score_smoothing applies to models scored by reconstruction error, such as ae or conv.")
        if input_scaling is not None:  # buffers: saved with the weights, so a loaded model takes raw rows
            self.register_buffer("input_center", torch.zeros(self.n_features))
            self.register_buffer("input_scale", torch.ones(self.n_features))
        self.output_activation = make_activation(output_activation)

    @classmethod
    def preferred_architecture(cls, input_shape: Sequence[int]) -> str:
        """The architecture this objective builds on when none is named: ``mlp`` (a variant may prefer ``conv`` for images)."""
        return "mlp"

    def _make_architecture(self, name: str | None, options: dict[str, Any]) -> Architecture:
        name = self.preferred_architecture(self.input_shape) if name is None else name
        if self.architectures is not None and name not in self.architectures:
            raise ConfigError(f"the {self.model_name!r} model builds on the {' or '.join(self.architectures)} architecture only, not {name!r}: {self.architecture_note}")
        return make_architecture(name, options, self.model_name)

    def build(self) -> None:
        """Build the layers; the constructor calls it once every ``__init__`` of the class chain has run, then
        the architecture's ``finish`` (a variant that adds layers extends this method)."""
        self.encoder = self.make_encoder()
        self.decoder = self.make_decoder()

    # -- what a variant may change ---------------------------------------------------------------

    def make_encoder(self) -> nn.Module:
        """``(batch, *input_shape) -> (batch, code_factor * code_size)``: the architecture's."""
        return self.architecture.encoder(self, self.code_factor * self.code_size)

    def make_decoder(self) -> nn.Module:
        """``(batch, code_size) -> (batch, *input_shape)`` logits: the architecture's."""
        return self.architecture.decoder(self, self.code_size)

    def corrupt(self, x: Tensor) -> Tensor:
        """The input the encoder sees while training (a denoising variant corrupts it)."""
        return x

    def latent(self, h: Tensor) -> Any:
        """The latent object for the encoder's output ``h``: anything with ``sample()`` and ``mode()`` (see :mod:`.latents`)."""
        return PointCode(h)

    def code(self, h: Tensor) -> Tensor:
        """The deterministic code for the encoder's output ``h`` (what :meth:`encode` returns)."""
        return self.latent(h).mode()

    def regularizers(self, x: Tensor, z: Tensor, q: Any) -> dict[str, Tensor]:
        """Extra named loss terms (batch averages) added to the reconstruction loss.

        ``x`` is the (scaled) input, ``z`` the code the decoder saw and ``q``
        the latent object it came from (the posterior of a VAE).
        """
        return {}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The model's parameters by group: ``"model"`` minimises ``loss``; any other group the terms
        :attr:`loss_groups` assigns to it. One group by default."""
        return {"model": list(self.parameters())}

    def parameters_except(self, *modules: nn.Module) -> list[nn.Parameter]:
        """The model's parameters outside ``modules`` (an adversary's own group, a prior fitted apart), in order."""
        apart = {id(p) for module in modules for p in module.parameters()}
        return [p for p in self.parameters() if id(p) not in apart]

    def decode_logits(self, z: Tensor) -> Tensor:
        """Codes ``(batch, code_size)`` -> pre-activation outputs ``(batch, *output_shape)`` (the input's shape
        but for architectures with their own, such as ``bow``'s word distribution)."""
        return self.decoder(z).reshape(-1, *self.output_shape)

    # -- input scaling ------------------------------------------------------------------------------

    def adapt(self, x: Tensor) -> None:
        """Fit what depends on the data before training starts: the architecture's (a vocabulary's word weights)
        and the input scaling (the Trainer calls it)."""
        self.architecture.adapt(self, x)
        if self.input_scaling is not None:
            center, scale = INPUT_SCALINGS[self.input_scaling](x.reshape(len(x), -1).double())
            self.input_center.copy_(center)
            self.input_scale.copy_(scale)

    def scale(self, x: Tensor) -> Tensor:
        """Raw samples ``(batch, *input_shape)`` -> the scaled values the model works on (a document's word
        counts -> their weights)."""
        x = self.architecture.scale(self, x)
        if self.input_scaling is None:
            return x
        return ((x.reshape(x.shape[0], -1) - self.input_center) / self.input_scale).reshape(x.shape)

    def unscale(self, x: Tensor) -> Tensor:
        """Scaled values -> raw units (the inverse of :meth:`scale`)."""
        if self.input_scaling is None:
            return x
        return (x.reshape(x.shape[0], -1) * self.input_scale + self.input_center).reshape(x.shape)

    # -- public API ---------------------------------------------------------------------------------

    def encode(self, x: Tensor) -> Tensor:
        """Map inputs of shape ``(batch, *input_shape)`` to codes ``(batch, code_size)``."""
        return self.code(self.encoder(self.scale(self.as_batch(x))))

    def decode(self, z: Tensor) -> Tensor:
        """Map codes ``(batch, code_size)`` to reconstructions ``(batch, *input_shape)``, in raw units."""
        return self.unscale(self.output_activation(self.decode_logits(z)))

    def reconstruction_error(self, x: Tensor) -> Tensor:
        """The reconstruction loss of each sample through its deterministic code, shape ``(batch,)``.

        In the (scaled) space the model was trained in; the anomaly score of
        :func:`aekit.apps.anomaly_scores`.
        """
        x = self.scale(self.as_batch(x))
        return self.reconstruction_nll(self.decode_logits(self.code(self.encoder(x))), x)

    def anomaly_score(self, x: Tensor) -> Tensor:
        """One score per sample, higher = more anomalous: the reconstruction error by default; with
        ``score_smoothing``, the squared error of the blurred residual image (in the scaled space)."""
        if not self.score_smoothing:
            return self.reconstruction_error(x)
        x, x_hat = self.reconstruct_scaled(x)
        height, width = self.input_shape[-2:]  # (batch, channels, height, width), also for (height, width) samples
        images = (-1, self.n_features // (height * width), height, width)  # the batch size left free: ONNX export
        return smoothed_squared_error(x_hat.reshape(images), x.reshape(images), self.score_smoothing)

    def feature_errors(self, x: Tensor) -> Tensor:
        """Squared error of every feature (every pixel of an image), shape ``(batch, *input_shape)``, in the scaled space."""
        x, x_hat = self.reconstruct_scaled(x)
        return (x_hat - x).pow(2)

    def reconstruct_scaled(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` as a scaled batch and its reconstruction through the deterministic code, both ``(batch, *input_shape)``."""
        x = self.scale(self.as_batch(x))
        return x, self.output_activation(self.decode_logits(self.code(self.encoder(x))))

    def reconstruction_nll(self, logits: Tensor, x: Tensor) -> Tensor:
        """The reconstruction loss of ``x`` under decoder outputs ``logits``, per sample."""
        return self.reconstruction.fn(logits if self.reconstruction.from_logits else self.output_activation(logits), x)

    def forward(self, x: Tensor) -> AEOutput:
        """Reconstruct ``x`` (shape ``(batch, *input_shape)``) and compute the loss terms."""
        x = self.scale(self.as_batch(x))
        q = self.latent(self.encoder(self.corrupt(x) if self.training else x))
        z = q.sample() if self.training else q.mode()
        logits = self.decode_logits(z)
        losses = {"reconstruction": self.reconstruction_nll(logits, x).mean(), **self.regularizers(x, z, q)}
        return self.output(logits, z, losses, q.metrics() if hasattr(q, "metrics") else None)

    def output(self, logits: Tensor, z: Tensor, losses: dict[str, Tensor], metrics: dict[str, Tensor] | None = None) -> AEOutput:
        """The :class:`AEOutput` of decoder ``logits``: the loss terms summed by parameter group."""
        groups: dict[str, list[Tensor]] = {}
        for name, value in losses.items():
            groups.setdefault(self.loss_groups.get(name, "model"), []).append(value)
        total = torch.stack(groups.pop("model")).sum()
        return AEOutput(
            x_hat=self.unscale(self.output_activation(logits)), z=z, losses=losses, loss=total,
            group_losses={name: torch.stack(terms).sum() for name, terms in groups.items()}, metrics=metrics or {},
        )

    def as_batch(self, x: Tensor) -> Tensor:
        """``x`` as ``(batch, *input_shape)`` (flat samples are accepted), with a clear error for a wrong shape."""
        if x.dim() < 2 or math.prod(x.shape[1:]) != self.n_features:
            raise DataError(
                f"this model expects samples of shape {self.input_shape} ({self.n_features} values each), "
                f"got a batch of shape {tuple(x.shape)}; check the data set or rebuild the model with a matching input_shape."
            )
        return self.architecture.prepare(x.reshape(x.shape[0], *self.input_shape))
