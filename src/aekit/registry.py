"""The model registry: adding a variant is one class and one decorator.

Registered classes record the keyword arguments they were built with in
``model.config``; that dictionary, saved as JSON beside the weights, is all
that is needed to build the model again (no pickled code, ever).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

from torch import nn

from .errors import ConfigError, suggest

_MODELS: dict[str, type[nn.Module]] = {}
M = TypeVar("M", bound=type[nn.Module])
C = TypeVar("C", bound=type)


def registering(table: dict[str, type], kind: str, attribute: str, name: str) -> Callable[[C], C]:
    """A class decorator that adds the class to ``table`` under ``name`` (refusing a name taken) and sets its
    ``attribute`` to the name: what :func:`register_model` and ``register_architecture`` share."""

    def decorator(cls: C) -> C:
        if name in table:
            raise ValueError(f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} named {name!r} is already registered ({table[name].__name__})")
        setattr(cls, attribute, name)
        table[name] = cls
        return cls

    return decorator


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator that registers a model under ``name``.

    Examples
    --------
    >>> @register_model("my-ae")            # doctest: +SKIP
    ... class MyAutoencoder(Autoencoder):
    ...     def regularizers(self, x, z, q): ...
    """
    return registering(_MODELS, "model", "model_name", name)


def _with_builtins() -> dict[str, type[nn.Module]]:
    """The registry, with aekit's own models in it: importing ``aekit.models`` registers them (``import aekit``
    alone does not import it, to stay light)."""
    from . import models  # noqa: F401

    return _MODELS


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_with_builtins())


def model_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``; a :class:`ConfigError` suggesting the closest name if none."""
    _with_builtins()
    try:
        return _MODELS[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}.{suggest(name, _MODELS)} Registered models: {', '.join(list_models())}."
        ) from None


def get_model(name: str, **options: Any) -> nn.Module:
    """Build the registered model ``name`` with the given constructor options.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`, e.g. ``"ae"``.
    **options
        The model's constructor arguments, e.g. ``input_shape=(784,)``,
        ``code_size=30``, ``hidden=(1000, 500, 250)``.

    Raises
    ------
    ConfigError
        For an unknown name, an unknown option or an invalid value.
    """
    cls = model_class(name)
    try:
        inspect.signature(cls).bind(**options)
        return cls(**options)
    except TypeError as exc:  # an unknown or missing option, here or in a parent's constructor
        raise ConfigError(f"model {name!r} does not accept these options ({exc}).") from None
    except (MemoryError, RuntimeError) as exc:  # layers too large to allocate, e.g. hidden=(100000000,)
        if isinstance(exc, RuntimeError) and "alloc" not in str(exc).lower() and "memory" not in str(exc).lower():
            raise
        raise ConfigError(f"model {name!r} with these sizes does not fit in memory; choose smaller hidden or code sizes.") from None
