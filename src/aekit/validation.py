"""Checks of user-given values, in one place: each raises a :class:`ConfigError` that names the value and says what fits.

Two forms: functions that check and convert a value (``positive_int("code_size", v)``),
and check factories whose result is declared beside a setting (``setting(50, "...", check=whole(1))``,
as scikit-learn declares ``_parameter_constraints``) and called as ``check(name, value)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from .errors import ConfigError, suggest

Check = Callable[[str, Any], None]


def is_number(value: Any) -> bool:
    """True for an int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite_number(value: Any) -> bool:
    """True for a finite int or float that is not a bool."""
    return is_number(value) and math.isfinite(value)


def positive_int(name: str, value: Any) -> int:
    """``value`` as a positive int, or a :class:`ConfigError` naming ``name``."""
    if not is_number(value) or not math.isfinite(value) or int(value) != value or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def positive_ints(name: str, values: Any) -> tuple[int, ...]:
    """``values`` as a tuple of positive ints, or a :class:`ConfigError` naming ``name``."""
    try:
        out = tuple(int(v) for v in values)
        exact = all(int(v) == v for v in values)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} must be a sequence of positive integers, got {values!r}.") from None
    if not exact or any(v <= 0 for v in out):
        raise ConfigError(f"{name} must hold positive integers only, got {values!r}.")
    return out


def check_range(name: str, value: Any, low: float, high: float | None = None, *, low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float inside ``[low, high]`` (open ends on request), or a :class:`ConfigError`."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name} must be a number, got {value!r}.") from None
    above = number > low if low_open else number >= low
    below = high is None or (number < high if high_open else number <= high)
    if isinstance(value, bool) or not (above and below and math.isfinite(number)):
        interval = f"{'(' if low_open else '['}{low}, {'inf)' if high is None else f'{high}' + (')' if high_open else ']')}"
        raise ConfigError(f"{name} must be in {interval}, got {value!r}.")
    return number


# -- declarable checks ---------------------------------------------------------------------------------


def whole(low: int = 0, high: int | None = None) -> Check:
    """An int (not a bool) in ``[low, high]``."""

    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            span = f"from {low} to {high}" if high is not None else "a positive integer" if low == 1 else f"an integer, {low} or more"
            raise ConfigError(f"{name} must be {span}, got {value!r}.")

    return check


def number(low: float, high: float | None = None, *, low_open: bool = False, high_open: bool = False) -> Check:
    """A finite int or float (not a bool) in the interval."""

    words = {(0, None, True): "a positive number", (0, None, False): "a number, 0 or more"}.get((low, high, low_open))

    def check(name: str, value: Any) -> None:
        try:
            if not is_number(value):
                raise ConfigError(f"{name} must be a number, got {value!r}.")
            check_range(name, value, low, high, low_open=low_open, high_open=high_open)
        except ConfigError:
            if words is None:
                raise
            raise ConfigError(f"{name} must be {words}, got {value!r}.") from None

    return check


def one_of(choices: Iterable[Any]) -> Check:
    """One of ``choices``; a near miss gets a suggestion."""
    options = tuple(choices)

    def check(name: str, value: Any) -> None:
        if not any(value is c or (type(value) is type(c) and value == c) for c in options):
            hint = suggest(value, [str(c) for c in options]) if isinstance(value, str) else ""
            raise ConfigError(f"unknown {name} {value!r}.{hint} Choose one of: {', '.join(map(str, options))}.")

    return check


def kind(cls: type | tuple[type, ...]) -> Check:
    """An instance of ``cls``; a bool only where ``cls`` is bool, and any number where it is float."""
    classes = cls if isinstance(cls, tuple) else (cls,)

    def check(name: str, value: Any) -> None:
        fits = any(value.__class__ is c or (c is float and is_number(value)) or (isinstance(value, c) and not isinstance(value, bool)) for c in classes)
        if not fits:
            raise ConfigError(f"{name} must be {' or '.join('true or false' if c is bool else 'a ' + c.__name__ for c in classes)}, got {value!r}.")

    return check


def optional(inner: Check) -> Check:
    """None, or what ``inner`` accepts."""

    def check(name: str, value: Any) -> None:
        if value is not None:
            inner(name, value)

    return check
