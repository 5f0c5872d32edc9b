"""Old module paths, kept working for one release (0.2) after the package took its pipeline layout.

``rlm.data``, ``rlm.text``, ``rlm.vocab`` ... were flat modules until 0.1; they now live in the
subpackages named after the stages of a row (``rlm.io``, ``rlm.inputs``, ``rlm.numbers``,
``rlm.nn``, ``rlm.predict``, ``rlm.serve``). An import finder answers for the old names with a
small module whose attributes are read from the new place, each read warning once with a
``DeprecationWarning`` that names the new import; nothing is copied, so old and new names are the
same objects. Remove this module and its finder in 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Callable, Sequence
from typing import Any

# old module -> the modules its public names now live in (searched in order)
MOVED: dict[str, tuple[str, ...]] = {
    "rlm.data": ("rlm.io",),
    "rlm.text": ("rlm.inputs.text",),
    "rlm.vocab": ("rlm.inputs.vocab",),
    "rlm.targets": ("rlm.numbers.targets",),
    "rlm.config": ("rlm.nn.config", "rlm.strict"),
    "rlm.model": ("rlm.nn.model",),
    "rlm.decoding": ("rlm.nn.decoding",),
    "rlm.training": ("rlm.nn.training", "rlm.nn.loss"),
    "rlm.runtime": ("rlm.nn.runtime",),
    "rlm.calibration": ("rlm.predict.calibration",),
    "rlm.metrics": ("rlm.predict.metrics",),
    "rlm.plots": ("rlm.predict.plots",),
    "rlm.server": ("rlm.serve.app", "rlm.serve.schema"),
    "rlm.batching": ("rlm.serve.batching",),
}


def _forwarder(old: str, targets: Sequence[str]) -> Callable[[str], Any]:
    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        # the module that defines the name wins over one that merely imports it
        homes = [t for t in targets if hasattr(importlib.import_module(t), name)]
        defining = [t for t in homes if getattr(_get(t, name), "__module__", None) == t]
        if not homes:
            raise AttributeError(
                f"module {old!r} has no attribute {name!r} (it moved to {targets[0]})"
            )
        target = (defining or homes)[0]
        warnings.warn(
            f"{old}.{name} moved to {target}.{name}; import it from there "
            f"({old} is removed in rlm 0.3)",
            DeprecationWarning,
            stacklevel=2,
        )
        return _get(target, name)

    return __getattr__


def _get(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


class _Loader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = types.ModuleType(spec.name, f"Deprecated alias of {MOVED[spec.name][0]}.")
        module.__getattr__ = _forwarder(spec.name, MOVED[spec.name])  # type: ignore[attr-defined]
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Loader())


def install() -> None:
    """Answer imports of the old names (idempotent)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
