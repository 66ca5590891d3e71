"""What the config checks need to know about vectorizer modules, as protocols modules/ implements.

config/ sits below modules/ (the modules read the spec), so it cannot import them: the
caller hands ``load_spec`` the module registry, and the checks see it only through
these read-only protocols.  ``searchd.modules.base.ModuleInfo`` and ``ModelInfo``
implement them; mypy checks that wherever a registry is passed to ``load_spec``.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Protocol, runtime_checkable


@runtime_checkable
class ModelCapabilities(Protocol):
    """One model of a module: the vector lengths it offers and the vectorizer keys it takes."""

    @property
    def name(self) -> str: ...

    @property
    def default_dimensions(self) -> int: ...

    @property
    def allowed_dimensions(self) -> AbstractSet[int] | None: ...  # a fixed set instead of a range

    @property
    def options(self) -> AbstractSet[str]: ...  # camelCase vectorizer keys only this model takes

    def accepts_dimensions(self, dimensions: int) -> bool: ...

    def describe_dimensions(self) -> str: ...


@runtime_checkable
class ModuleCapabilities(Protocol):
    """One vectorizer module, by the name a config gives in ``vectorizer.module``."""

    @property
    def name(self) -> str: ...

    @property
    def modalities(self) -> AbstractSet[str]: ...  # "text", "image"

    @property
    def embeds(self) -> AbstractSet[str]: ...  # what objects may hold (may be narrower than modalities)

    @property
    def models(self) -> Mapping[str, ModelCapabilities]: ...

    @property
    def multi_vector(self) -> bool: ...

    @property
    def open_models(self) -> bool: ...  # any model name the provider serves (dimensions then required)

    @property
    def brings_own_vectors(self) -> bool: ...  # module "none": objects bring their vectors

    def model(self, name: str | None) -> ModelCapabilities | None: ...


# The registry, as the checks see it: module name → capabilities.
KnownModules = Mapping[str, ModuleCapabilities]
