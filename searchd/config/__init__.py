"""Config language: YAML files → validated, immutable spec.

Stages, each testable alone: ``loader`` (YAML with positions, ``${ENV}``),
``validate`` (JSON Schema, every error), ``spec`` (frozen dataclasses),
``semantic`` (rules JSON Schema cannot express).  ``load_spec`` runs them all.
"""

from searchd.config.build import load_spec

__all__ = ["load_spec"]
