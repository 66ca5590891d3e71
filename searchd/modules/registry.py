"""Module registry: name → ModuleInfo.  Built by a function, so there is no global to mutate."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType

from searchd.errors import SearchdError
from searchd.modules.base import ModuleInfo

NONE_MODULE = ModuleInfo(
    name="none",
    title="Bring your own vectors",
    documentation="",
    modalities=frozenset(),
)


class ModuleRegistry(Mapping[str, ModuleInfo]):
    def __init__(self, modules: Iterable[ModuleInfo]) -> None:
        by_name: dict[str, ModuleInfo] = {}
        for module in modules:
            if module.name in by_name:
                raise SearchdError(f"module '{module.name}' is registered twice")
            by_name[module.name] = module
        self._modules = MappingProxyType(by_name)

    def __getitem__(self, name: str) -> ModuleInfo:
        return self._modules[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)


def default_registry() -> ModuleRegistry:
    from searchd.modules import jina, local, nvidia, weaviate_embed

    return ModuleRegistry([NONE_MODULE, *local.MODULES, *jina.MODULES, *nvidia.MODULES, *weaviate_embed.MODULES])
