"""Read YAML into plain data while remembering where every node came from.

PyYAML's composer gives nodes with marks; we build dicts and lists from them
ourselves so that each value's path maps to ``(file, line, column)`` (1-based).
``${VAR}`` in any string is replaced from the environment here, so secrets
never have to be written in a file.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from searchd.errors import ConfigIssue

PathKey = tuple[str | int, ...]
Position = tuple[str, int, int]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
YAML_SUFFIXES = (".yaml", ".yml")


def render_path(path: PathKey) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class Locator:
    """Maps a path inside the (merged) document to its source position."""

    positions: dict[PathKey, Position] = field(default_factory=dict)
    default_file: str = "<config>"
    # Merged collections are renumbered; issues show the index the user sees in their file.
    aliases: dict[PathKey, PathKey] = field(default_factory=dict)

    def find(self, path: PathKey) -> Position:
        # Fall back to the nearest ancestor: a missing key is reported where its parent is.
        for end in range(len(path), -1, -1):
            found = self.positions.get(tuple(path[:end]))
            if found:
                return found
        return (self.default_file, 1, 1)

    def shown(self, path: PathKey) -> PathKey:
        """The path as the user sees it in their own file."""
        return (*self.aliases[path[:2]], *path[2:]) if path[:2] in self.aliases else path

    def issue(self, path: PathKey, message: str, hint: str = "", at: PathKey | None = None) -> ConfigIssue:
        """An issue about ``path``, located at ``at`` (default: the path itself)."""
        file, line, column = self.find(path if at is None else at)
        return ConfigIssue(file, line, column, render_path(self.shown(path)), message, hint)

    def describe(self, path: PathKey, from_file: str) -> str:
        """Name a place for a hint: its path, plus its file when that differs from ``from_file``."""
        file = self.find(path)[0]
        shown = render_path(self.shown(path))
        return shown if file == from_file else f"{shown} in {file}"


@dataclass
class SourceDocument:
    file: str
    data: Any
    locator: Locator


def _is_secret(path: PathKey) -> bool:
    """Provider API keys and the server's own keys: these must come from ${ENV}."""
    return bool(path) and (path[-1] == "apiKey" or (path[:3] == ("server", "auth", "apiKeys") and path[-1] == "key"))


class _Builder:
    def __init__(self, file: str, environ: Mapping[str, str]) -> None:
        self.file = file
        self.environ = environ
        self.locator = Locator(default_file=file)
        self.issues: list[ConfigIssue] = []
        self._scalars = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.locator.positions[path] = self._position(node)
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self._scalars.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
                if not isinstance(key, str):
                    self._add(key_node, path, "mapping keys must be plain strings", "quote the key or rename it")
                    continue
                if key in result:
                    self._add(key_node, (*path, key), f"duplicate key '{key}'", "each key may appear once; remove or merge the repeats")
                    continue
                result[key] = self.build(value_node, (*path, key))
                if isinstance(value_node, (yaml.MappingNode, yaml.SequenceNode)) and not value_node.flow_style:
                    # A block value starts on the next line; point at its key, where the user looks.
                    self.locator.positions[(*path, key)] = self._position(key_node)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        value = self._scalars.construct_object(node)
        if _is_secret(path) and not (isinstance(value, str) and _ENV_REF.fullmatch(value)):
            self._add(node, path, "secrets are never written in the config", f"write it as an environment reference, e.g. {path[-1]}: ${{MY_SECRET}}")
            return ""
        if isinstance(value, str):
            return self._interpolate(value, node, path)
        return value

    def _position(self, node: yaml.Node) -> Position:
        return (self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def _interpolate(self, value: str, node: yaml.Node, path: PathKey) -> Any:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.environ:
                self._add(
                    node,
                    path,
                    f"environment variable {name} is not set",
                    f"export {name}=... before starting searchd, or remove the ${{{name}}} reference",
                )
                return ""
            return self.environ[name]

        result = _ENV_REF.sub(replace, value)
        if isinstance(node, yaml.ScalarNode) and node.style is None and _ENV_REF.fullmatch(value) and result:
            # An unquoted `port: ${PORT}` should give the number, as if it had been written there.
            resolved = yaml.safe_load(result)
            if isinstance(resolved, (int, float, bool)):
                return resolved
        return result

    def _add(self, node: yaml.Node, path: PathKey, message: str, hint: str) -> None:
        mark = node.start_mark
        self.issues.append(ConfigIssue(self.file, mark.line + 1, mark.column + 1, render_path(path), message, hint))


def parse_yaml(text: str, file: str, environ: Mapping[str, str]) -> tuple[SourceDocument | None, list[ConfigIssue]]:
    """Parse one YAML document; return it (or None) and the issues found."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"malformed YAML: {exc.problem or exc.context}"
        return None, [ConfigIssue(file, line, column, "", message, "fix the YAML syntax at this position")]
    except yaml.YAMLError as exc:
        return None, [ConfigIssue(file, 1, 1, "", f"malformed YAML: {exc}", "fix the YAML syntax")]
    if node is None:
        return SourceDocument(file, {}, Locator(default_file=file)), []
    builder = _Builder(file, environ)
    data = builder.build(node, ())
    return SourceDocument(file, data, builder.locator), builder.issues


def config_files(path: Path) -> list[Path]:
    """The YAML files a config path stands for: the file itself, or a directory's files, sorted.

    Hidden files and directories are skipped: editor backups, ``.git``, and the
    ``..data`` / ``..<timestamp>`` copies of a Kubernetes ConfigMap volume.
    """
    if path.is_dir():
        found = (p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and p.is_file())
        return sorted(p for p in found if not any(part.startswith(".") for part in p.relative_to(path).parts))
    return [path]


def config_digest(path: Path) -> str:
    """A hash of what the config files hold now (through symlinks): a reload is due when it changes."""
    digest = hashlib.sha256()
    for file in config_files(path) if path.exists() else []:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode() + b"\0")
        try:
            digest.update(file.read_bytes())
        except OSError as exc:  # unreadable now: a reload reports it
            digest.update(f"unreadable: {exc.errno}".encode())
        digest.update(b"\0")
    return digest.hexdigest()


def read_documents(path: Path, environ: Mapping[str, str] | None = None) -> tuple[list[SourceDocument], list[ConfigIssue]]:
    env = os.environ if environ is None else environ
    if not path.exists():
        return [], [ConfigIssue(str(path), 1, 1, "", "config path does not exist", "pass a YAML file or a directory of them")]
    files = config_files(path)
    if not files:
        return [], [ConfigIssue(str(path), 1, 1, "", "no .yaml or .yml files in this directory", "add a config file")]
    documents: list[SourceDocument] = []
    issues: list[ConfigIssue] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            issues.append(ConfigIssue(str(file), 1, 1, "", f"cannot read file: {exc}", "check the file's permissions and encoding (UTF-8)"))
            continue
        document, found = parse_yaml(text, str(file), env)
        issues.extend(found)
        if document is not None:
            documents.append(document)
    return documents, issues
