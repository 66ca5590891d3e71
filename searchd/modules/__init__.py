"""Vectorizer modules: one Protocol, one registry keyed by module name, one file per provider."""

from searchd.modules.base import ModelInfo, ModuleInfo, Modality, Vectorizer
from searchd.modules.registry import ModuleRegistry, default_registry

__all__ = ["ModelInfo", "ModuleInfo", "Modality", "ModuleRegistry", "Vectorizer", "default_registry"]
