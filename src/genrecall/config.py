"""Configuration: ``params.yaml`` (namespaced by stage) into typed dataclasses.

Each stage module defines a config dataclass with safe defaults and a comment on each default.
This module only loads the YAML and fills a dataclass from one namespace, refusing unknown keys so a
typo in params.yaml fails loudly instead of silently using a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

DEFAULT_PARAMS = Path("params.yaml")


PARAMS_ENV = "GENRECALL_PARAMS"


class ParamsNotFound(FileNotFoundError):
    """A params file that was named (argument or ``$GENRECALL_PARAMS``) does not exist."""


def load_params(path: str | Path | None = None, *, missing_ok: bool = False) -> dict[str, Any]:
    """Read ``path``, else ``$GENRECALL_PARAMS``, else ``./params.yaml``.

    A file that was named (``path`` or the environment variable) and does not exist is an error: a
    mistyped path must not silently mean "all defaults". Only the implicit ``./params.yaml`` may be
    absent (all defaults), or any file when the caller says ``missing_ok`` (a workspace default).
    """
    named = path or os.environ.get(PARAMS_ENV) or None
    where = f"${PARAMS_ENV}" if not path and named else "params file"
    path = Path(named or DEFAULT_PARAMS)
    if not path.exists():
        if named and not missing_ok:
            raise ParamsNotFound(f"{where} {path} does not exist (unset it, or point it at a params.yaml)")
        return {}
    with path.open() as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of stage names to settings")
    return data


def merge_params(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` applied, nested mappings merged key by key (neither is modified)."""
    out = dict(base)
    for key, value in overrides.items():
        out[key] = merge_params(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def from_dict(cls: type[T], values: dict[str, Any] | None) -> T:
    """Build dataclass ``cls`` from ``values``; unknown keys raise, missing keys take defaults."""
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown setting(s) {unknown}; known: {sorted(fields)}")
    for name, value in list(values.items()):
        ftype = fields[name].type
        # YAML lists become tuples where the dataclass declares a tuple (hashable, immutable config).
        if isinstance(value, list) and "tuple" in str(ftype):
            values[name] = tuple(value)
    return cls(**values)


def stage_config(cls: type[T], stage: str, params: dict[str, Any] | None = None) -> T:
    """The config for ``stage`` from params.yaml (or from ``params`` when given)."""
    params = load_params() if params is None else params
    return from_dict(cls, params.get(stage))


def params_hash(params: dict[str, Any]) -> str:
    """A stable short hash of a params mapping (recorded in bundle manifests and reports)."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
