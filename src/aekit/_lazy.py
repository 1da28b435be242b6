"""Public names of a package imported on first use (PEP 562), so that ``import aekit`` and ``aekit --help`` do not
import PyTorch: ``aekit.Trainer`` imports ``aekit.training`` (and torch) the first time it is read."""

from __future__ import annotations

import importlib
import signal
import sys
import threading
import types


class LazyPackage(types.ModuleType):
    """A package whose public names (``_lazy_names``: name -> defining module) are imported when first read.

    A public function named like its own submodule (``aekit.apps.detect``) stays the function when the submodule
    is imported later: the import system's ``setattr(package, "detect", <module>)`` is ignored.
    """

    def __getattr__(self, name: str) -> object:
        where = self.__dict__.get("_lazy_names", {})
        if name not in where:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name], self.__name__), name)
        self.__dict__[name] = value  # read once: later reads are plain attributes
        return value

    def __dir__(self) -> list[str]:
        return sorted({*self.__dict__, *self.__dict__.get("_lazy_names", {})})

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}" and name in self.__dict__.get("_lazy_names", {}):
            return
        super().__setattr__(name, value)


def lazy_names(package: str, where: dict[str, str]) -> None:
    """Make ``package`` (a name in ``sys.modules``) import its public names ``where`` on first use."""
    module = sys.modules[package]
    module.__dict__["_lazy_names"] = dict(where)
    module.__class__ = LazyPackage


def later(module: str, name: str):
    """A command's function, imported only when the command runs (not when ``aekit --help`` builds the parser)."""

    def run(args):
        return getattr(import_quietly(module), name)(args)

    run.__name__ = run.__qualname__ = name
    return run


def import_quietly(module: str) -> types.ModuleType:
    """Import ``module`` with Ctrl-C only noted until the import ends, then raised as KeyboardInterrupt: one raised
    while a C++ extension runs Python code (pybind11, in torch's import) would abort the process instead."""
    if module in sys.modules or threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return importlib.import_module(module)
    interrupted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
    try:
        imported = importlib.import_module(module)
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        raise KeyboardInterrupt
    return imported
