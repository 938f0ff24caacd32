"""Registry of backbone variants. Each registered function sets the arch args
and calls one private builder; ``default_cfgs`` holds the per-variant metadata."""
from __future__ import annotations

from typing import Callable

_MODELS: dict[str, Callable] = {}
_CFGS: dict[str, dict] = {}


def register_model(cfg: dict | None = None):
    def deco(fn):
        _MODELS[fn.__name__] = fn
        _CFGS[fn.__name__] = dict(cfg or {})
        return fn
    return deco


def list_models() -> list[str]:
    return sorted(_MODELS)


def model_cfg(name: str) -> dict:
    if name not in _CFGS:
        raise KeyError(f"unknown arch {name!r}; known: {list_models()}")
    return dict(_CFGS[name])


def create_model(name: str, **kw):
    if name not in _MODELS:
        raise KeyError(f"unknown arch {name!r}; known: {list_models()}")
    return _MODELS[name](**kw)
