"""Self-supervised pretraining of the UNet: CM-UNet and four baselines behind one interface.

``METHODS`` maps a method name to its class (a :class:`~angioseg.pretrain.base.PretrainMethod`)::

    from angioseg.pretrain import METHODS
    method = METHODS["cmunet"]({"width": 16}, image_size=128)

It is loaded lazily so that ``import angioseg.pretrain`` (and ``angioseg --help``) stays free of
torch. Run a pretraining with :func:`angioseg.pretrain.run.run_pretrain`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from angioseg.pretrain.base import PretrainMethod

METHOD_NAMES = ("cmunet", "mae", "genesis", "spark", "moco")
_CLASSES = {
    "cmunet": ("angioseg.pretrain.cmunet", "CMUNet"),
    "mae": ("angioseg.pretrain.mae", "MAE"),
    "genesis": ("angioseg.pretrain.genesis", "Genesis"),
    "spark": ("angioseg.pretrain.spark", "SparK"),
    "moco": ("angioseg.pretrain.moco", "MoCo"),
}


def method_class(name: str) -> type[PretrainMethod]:
    """The class registered as ``name``; ``ValueError`` naming the valid methods otherwise."""
    if name not in _CLASSES:
        raise ValueError(f"unknown pretraining method {name!r}; expected one of {', '.join(METHOD_NAMES)}")
    module, cls = _CLASSES[name]
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def __getattr__(name: str) -> Any:
    if name == "METHODS":
        return {n: method_class(n) for n in METHOD_NAMES}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHODS", "METHOD_NAMES", "method_class"]
