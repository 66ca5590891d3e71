"""Vectorizer modules: one Protocol, one registry keyed by module name, one file per provider."""

from searchd.modules.base import Modality, ModelInfo, ModuleInfo, Vectorizer
from searchd.modules.registry import ModuleRegistry, default_registry

__all__ = ["Modality", "ModelInfo", "ModuleInfo", "ModuleRegistry", "Vectorizer", "default_registry"]
