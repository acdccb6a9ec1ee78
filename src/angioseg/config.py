"""Dataclass configs: YAML in, resolved YAML written into every run folder.

Every run (fine-tuning, pretraining, experiments, CUTS, CT) is described by a dataclass; the CLI
builds one from its options (or a YAML file), and the resolved config is written as
``config.yaml`` into the run folder so the run can be repeated or resumed exactly.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from angioseg.errors import AngiosegError
from angioseg.utils import read_yaml, write_yaml

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested dataclasses -> plain dicts (paths as strings)."""
    out = dataclasses.asdict(cfg)

    def fix(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [fix(x) for x in v]
        return v

    return fix(out)  # type: ignore[no-any-return]


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "config") -> T:
    """Build ``cls`` from a dict, recursing into dataclass-typed fields; unknown keys are an error.

    A dataclass with a static ``upgrade(dict) -> dict`` first translates keys that older versions
    wrote (so old ``config.yaml`` files still load, with their old meaning).
    """
    data = dict(data or {})
    upgrade = getattr(cls, "upgrade", None)
    if callable(upgrade):
        data = upgrade(data)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise AngiosegError(f"{where}: unknown option(s) {unknown}; expected some of {sorted(names)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        hint = hints.get(key)
        sub = _dataclass_in(hint)
        if sub is not None and isinstance(value, dict):
            kwargs[key] = from_dict(sub, value, f"{where}.{key}")
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _dataclass_in(hint: Any) -> type | None:
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg) and isinstance(arg, type):
                return arg
    return None


def save_config(path: str | Path, cfg: Any) -> None:
    write_yaml(path, to_dict(cfg))


def read_config_dict(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML config file; :class:`AngiosegError` naming the file otherwise."""
    p = Path(path)
    if not p.is_file():
        raise AngiosegError(f"{p}: config file does not exist")
    try:
        data = read_yaml(p)
    except Exception as exc:
        raise AngiosegError(f"{p}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise AngiosegError(f"{p}: expected a mapping of options at the top level")
    return data


def load_config(cls: type[T], path: str | Path) -> T:
    return from_dict(cls, read_config_dict(path), str(path))
