"""Start-up warnings for remote modules that have no API key from any source.

Without one, every write that needs an embedding fails after the provider's retries;
saying so once at start, with the variable and the header that would supply a key,
saves the operator from reading that out of a connection error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from searchd.modules.base import ModuleInfo


def missing_key_warnings(modules: Mapping[str, ModuleInfo], settings: Mapping[str, Mapping[str, Any]], environ: Mapping[str, str]) -> list[str]:
    """One line per module in use whose provider key is in neither the config nor the environment."""
    warnings = []
    for name, module in modules.items():
        provider = module.provider
        if provider is None or settings.get(name, {}).get(provider.config_key) or environ.get(provider.env_var):
            continue
        warnings.append(
            f"{name}: no API key for {provider.name}: set {provider.env_var} (or modules.{name}.{provider.config_key} in the config), "
            f"or send the {provider.key_header} header with each request; until then its writes and queries fail"
        )
    return warnings
