"""Feast features for genrecall: source tables, the store driven from Python, online lookups.

``sources`` is plain pandas; ``store`` imports Feast (several seconds), so it loads on first use.
"""

from __future__ import annotations

from typing import Any

from genrecall.features.sources import FeaturesConfig, SourceState

__all__ = [
    "FeatureClient",
    "FeaturesConfig",
    "ItemFeatures",
    "MaterializeResult",
    "SourceState",
    "UserFeatures",
    "apply",
    "apply_and_materialize",
    "materialize",
    "open_store",
    "repo_config",
    "training_frame",
    "write_online",
]
_STORE_NAMES = set(__all__) - {"FeaturesConfig", "SourceState"}  # loaded from .store on first use


def __getattr__(name: str) -> Any:
    if name in _STORE_NAMES:
        from genrecall.features import store

        return getattr(store, name)
    raise AttributeError(f"module 'genrecall.features' has no attribute {name!r}")
