"""Read YAML into plain data while remembering where every node came from.

PyYAML's composer gives nodes with marks; we build dicts and lists from them
ourselves so that each value's path maps to ``(file, line, column)`` (1-based).
``${VAR}`` in any string is replaced from the environment here, so secrets
never have to be written in a file.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from searchd.config.yamlsafe import DEFAULT_MAX_FILE_BYTES, MAX_BYTES_ENV, YamlLimits, YamlRefused, compose
from searchd.errors import ConfigIssue

PathKey = tuple[str | int, ...]
Position = tuple[str, int, int]

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
YAML_SUFFIXES = (".yaml", ".yml")
MERGE_TAG = "tag:yaml.org,2002:merge"
STR_TAG = "tag:yaml.org,2002:str"
# The tags a collection may carry: the ones YAML resolves an untagged (or `!`, `!!map`, `!!seq`) one to.
COLLECTION_TAGS = {"mapping": "tag:yaml.org,2002:map", "sequence": "tag:yaml.org,2002:seq"}
TYPED_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool"})


def render_path(path: PathKey) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class Unlocated(Exception):
    """A path of a document read fast (without positions) that its lazy locator cannot place: read it exactly."""


# Places the part of a document read fast that holds a path: records its positions in the locator, or answers
# False when it cannot (then the document is read again exactly).
LazyLocate = Callable[["Locator", "PathKey"], bool]


@dataclass
class Locator:
    """Maps a path inside the (merged) document to its source position."""

    positions: dict[PathKey, Position] = field(default_factory=dict)
    default_file: str = "<config>"
    # Merged collections are renumbered; issues show the index the user sees in their file.
    aliases: dict[PathKey, PathKey] = field(default_factory=dict)
    # The (merged) data the paths lead into: whether a key was written is read from it, since a
    # document read fast (fastload.py) has no positions.
    data: Any = None
    # A document read fast has no positions: they are looked up when an issue needs them (``fastload.ItemLocator``).
    lazy: LazyLocate | None = None

    def written(self, path: PathKey) -> bool:
        """Whether the document has a value at ``path`` (a key the user wrote, or a merge key brought)."""
        node = self.data
        for step in path:
            found = step in node if isinstance(node, dict) else isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)
            if not found:
                return False
            node = node[step]
        return True

    def find(self, path: PathKey) -> Position:
        if self.lazy is not None and path not in self.positions and not self.lazy(self, path):
            raise Unlocated(render_path(path))
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
    exact: bool = True  # False: read by fastload without positions (located lazily, or read again exactly)
    checked: bool = True  # whether it passed the config schema already (a fast reading checks it in Rust)


_SECRET_KEYS = frozenset({"apiKey", "key", "url"})  # the last step of every path is_secret can accept


def is_secret(path: PathKey) -> bool:
    """Provider API keys, the server's own keys and the database URL (it may hold a password): these must come from ${ENV}."""
    return bool(path) and (path[-1] == "apiKey" or (path[:3] == ("server", "auth", "apiKeys") and path[-1] == "key") or path == ("server", "storage", "url"))


class _Builder:
    def __init__(self, file: str, environ: Mapping[str, str]) -> None:
        self.file = file
        self.environ = environ
        self.locator = Locator(default_file=file)
        self.issues: list[ConfigIssue] = []
        self._scalars = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        # Recursion is bounded: yamlsafe.compose refused documents nested deeper than its limit, aliases included.
        mark = node.start_mark
        self.locator.positions[path] = (self.file, mark.line + 1, mark.column + 1)
        if type(node) is yaml.ScalarNode and node.tag == STR_TAG and path and path[-1] not in _SECRET_KEYS and "${" not in node.value:
            return node.value  # most values: a plain string, not a secret, nothing to interpolate (the checks below, inlined)
        if isinstance(node, yaml.CollectionNode):
            self._check_collection_tag(node, path)
        if isinstance(node, yaml.MappingNode):
            result: dict[Any, Any] = {}
            merges = [value for key, value in node.value if key.tag == MERGE_TAG]
            # Merged keys first (an earlier mapping in `<<: [*a, *b]` wins), so explicit keys override them.
            for source in reversed([s for value in merges for s in self._merge_sources(value, path)]):
                result.update(self.build(source, path))
            self.locator.positions[path] = self._position(node)
            explicit: set[str] = set()
            for key_node, value_node in node.value:
                if key_node.tag == MERGE_TAG:
                    continue
                key = self._scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode) else None
                if not isinstance(key, str):
                    self._add(key_node, path, "mapping keys must be plain strings", "quote the key or rename it")
                    continue
                if key in explicit:
                    self._add(key_node, (*path, key), f"duplicate key '{key}'", "each key may appear once; remove or merge the repeats")
                    continue
                explicit.add(key)
                result[key] = self.build(value_node, (*path, key))
                if isinstance(value_node, (yaml.MappingNode, yaml.SequenceNode)) and not value_node.flow_style:
                    # A block value starts on the next line; point at its key, where the user looks.
                    self.locator.positions[(*path, key)] = self._position(key_node)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        value = self._scalar(node, path)
        if is_secret(path) and not (isinstance(value, str) and ENV_REF.fullmatch(value)):
            self._add(node, path, "secrets are never written in the config", f"write it as an environment reference, e.g. {path[-1]}: ${{MY_SECRET}}")
            return ""
        if isinstance(value, str):
            return self._interpolate(value, node, path)
        return value

    def _check_collection_tag(self, node: yaml.CollectionNode, path: PathKey) -> None:
        """A tag on a mapping or sequence (``!!python/object:…``, ``!foo``, ``!!set``) would be dropped silently: refuse it as on a scalar."""
        kind = "mapping" if isinstance(node, yaml.MappingNode) else "sequence"
        if node.tag != COLLECTION_TAGS[kind]:
            self._add(node, path, f"cannot read this {kind}: the tag {node.tag} is not supported", f"remove the tag: a {kind} takes none")

    def _merge_sources(self, value: yaml.Node, path: PathKey) -> list[yaml.MappingNode]:
        """The mappings a merge key (``<<: *base`` or ``<<: [*a, *b]``) brings in."""
        items = value.value if isinstance(value, yaml.SequenceNode) else [value]
        sources = [item for item in items if isinstance(item, yaml.MappingNode)]
        if len(sources) != len(items):
            self._add(value, path, "a merge key '<<' takes a mapping or a list of mappings", "write <<: *anchor, where &anchor names a mapping")
        return sources

    def _scalar(self, node: yaml.Node, path: PathKey) -> Any:
        if node.tag == STR_TAG:
            return node.value
        construct = yaml.constructor.SafeConstructor.yaml_constructors.get(node.tag)
        try:
            if construct is None:
                raise yaml.constructor.ConstructorError(None, None, f"the tag {node.tag} is not supported", node.start_mark)
            return construct(self._scalars, node)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            problem = exc.problem if isinstance(exc, yaml.MarkedYAMLError) and exc.problem else str(exc)
            self._add(node, path, f"cannot read this value: {problem}", "quote it to make it a string, or remove the tag")
            return str(node.value)  # its text, so that checks of the rest do not report it again

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

        if "${" not in value:  # most strings: no regex pass
            return value
        result = ENV_REF.sub(replace, value)
        if isinstance(node, yaml.ScalarNode) and node.style is None and ENV_REF.fullmatch(value) and result:
            # An unquoted `port: ${PORT}` should give the number, as if it had been written there.
            # Typed as YAML would type the plain scalar (resolved, not parsed: the value is data, not a document).
            resolve: Callable[[type[yaml.Node], str, tuple[bool, bool]], str] = yaml.resolver.Resolver().resolve
            tag = resolve(yaml.ScalarNode, result, (True, False))
            if tag in TYPED_TAGS:
                resolved = self._scalar(yaml.ScalarNode(tag, result, node.start_mark, node.end_mark), path)
                if isinstance(resolved, (int, float, bool)):
                    return resolved
        return result

    def _add(self, node: yaml.Node, path: PathKey, message: str, hint: str) -> None:
        mark = node.start_mark
        self.issues.append(ConfigIssue(self.file, mark.line + 1, mark.column + 1, render_path(path), message, hint))


def parse_yaml(
    text: str, file: str, environ: Mapping[str, str], limits: YamlLimits | None = None
) -> tuple[SourceDocument | None, list[ConfigIssue]]:
    """Parse one YAML document; return it (or None) and the issues found."""
    try:
        node = compose(text, limits or YamlLimits())
    except YamlRefused as exc:
        line, column = exc.mark.line + 1, exc.mark.column + 1
        return None, [ConfigIssue(file, line, column, "", exc.message, exc.hint)]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"malformed YAML: {exc.problem or exc.context}"
        return None, [ConfigIssue(file, line, column, "", message, "fix the YAML syntax at this position")]
    except yaml.reader.ReaderError as exc:  # a character YAML refuses: it has a position, not a mark
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        message = f"malformed YAML: the non-printable character #x{exc.character:04x} is not allowed"
        return None, [ConfigIssue(file, line, column, "", message, 'remove it, or write it escaped in a double-quoted string ("\\x07", "\\u0007")')]
    except yaml.YAMLError as exc:
        return None, [ConfigIssue(file, 1, 1, "", f"malformed YAML: {exc}", "fix the YAML syntax")]
    if node is None:
        return SourceDocument(file, {}, Locator(default_file=file)), []
    builder = _Builder(file, environ)
    data = builder.build(node, ())
    return SourceDocument(file, data, builder.locator), builder.issues


def _file_issue(path: Path, message: str, hint: str) -> ConfigIssue:
    return ConfigIssue(str(path), 1, 1, "", message, hint)


def _broken_link(entry: Path) -> ConfigIssue | None:
    """The error for a symbolic link that leads nowhere, when it looks like a config file (or is one we cannot tell)."""
    try:
        target = os.readlink(entry)
    except OSError:
        target = "?"
    if entry.suffix not in YAML_SUFFIXES and Path(target).suffix not in YAML_SUFFIXES:
        return None  # not a config file, whatever it points at
    try:
        entry.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return _file_issue(entry, f"symbolic link loop: {entry} -> {target} never reaches a file", "point the link at a real file, or remove it")
    return _file_issue(entry, f"dangling symbolic link: {entry} -> {target}, which does not exist", "create the target, fix the link, or remove it")


def scan_config(path: Path) -> tuple[list[Path], list[ConfigIssue]]:
    """The YAML files a config path stands for (the file itself, or a directory's files, sorted) and what is wrong with the directory.

    Hidden files and directories are skipped: editor backups, ``.git``, and the
    ``..data`` / ``..<timestamp>`` copies of a Kubernetes ConfigMap volume.  Links are
    followed; a link that looks like a config file but leads nowhere (dangling, or a
    loop), and a directory link back to a directory being read, are errors naming it.
    """
    if not path.is_dir():
        return [path], []
    files: list[Path] = []
    issues: list[ConfigIssue] = []

    def walk(directory: Path, ancestors: frozenset[Path]) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            issues.append(_file_issue(directory, f"cannot list this directory: {exc.strerror}", "check its permissions"))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child = Path(entry.path)
            try:
                mode = child.stat().st_mode
            except OSError:
                broken = _broken_link(child) if entry.is_symlink() else None
                if broken is not None:
                    issues.append(broken)
                continue
            if stat.S_ISDIR(mode):
                real = child.resolve()
                if real in ancestors:
                    issues.append(_file_issue(child, f"symbolic link loop: {child} leads back to {real}, which contains it", "remove the link or point it elsewhere"))
                    continue
                walk(child, ancestors | {real})
            elif stat.S_ISREG(mode) and child.suffix in YAML_SUFFIXES:
                files.append(child)

    walk(path, frozenset({path.resolve()}))
    return sorted(files), issues


def config_files(path: Path) -> list[Path]:
    """The YAML files a config path stands for (see ``scan_config``)."""
    return scan_config(path)[0]


def config_digest(path: Path) -> str:
    """A hash of what the config files hold now (through symlinks): a reload is due when it changes."""
    digest = hashlib.sha256()
    files, issues = scan_config(path) if path.exists() else ([], [])
    for issue in issues:
        digest.update(issue.render().encode() + b"\0")
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode() + b"\0")
        try:
            with open(file, "rb") as source:
                for chunk in iter(lambda: source.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError as exc:  # unreadable now: a reload reports it
            digest.update(f"unreadable: {exc.errno}".encode())
        digest.update(b"\0")
    return digest.hexdigest()


def max_file_bytes(environ: Mapping[str, str]) -> int | ConfigIssue:
    """The size limit of one config file: ``SEARCHD_CONFIG_MAX_BYTES``, else 8 MiB."""
    raw = environ.get(MAX_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_FILE_BYTES
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return ConfigIssue(MAX_BYTES_ENV, 1, 1, "", f"{MAX_BYTES_ENV}={raw!r} is not a number of bytes", "set it to a positive whole number, e.g. 8388608 for 8 MiB")


def _read_text(file: Path, limit: int) -> bytes | ConfigIssue:
    """The file's bytes, checked to be UTF-8 (an ASCII file, most of them, is not decoded: the fast reading takes bytes)."""
    hint = f"config files are limited to {limit:,} bytes; split the config into several files in a directory, or raise {MAX_BYTES_ENV}"
    try:
        if file.stat().st_size > limit:  # refused before reading a byte
            return _file_issue(file, f"file is {file.stat().st_size:,} bytes, over the limit of {limit:,}", hint)
        with open(file, "rb") as source:
            data = source.read(limit + 1)  # a file that grows while read (or a FIFO) is bounded too
        if len(data) > limit:
            return _file_issue(file, f"file is over the limit of {limit:,} bytes", hint)
        if not data.isascii():
            data.decode("utf-8")
        return data
    except (OSError, UnicodeDecodeError) as exc:
        return _file_issue(file, f"cannot read file: {exc}", "check the file's permissions and encoding (UTF-8)")


FastReader = Callable[[bytes, Mapping[str, str], str], "SourceDocument | None"]


def read_documents(
    path: Path, environ: Mapping[str, str] | None = None, fast: FastReader | None = None, fast_min_bytes: int = 0
) -> tuple[list[SourceDocument], list[ConfigIssue]]:
    """Every config file's data and the issues found; ``fast`` (fastload.fast_document) first reads files of ``fast_min_bytes`` or more."""
    env = os.environ if environ is None else environ
    if not path.exists():
        return [], [ConfigIssue(str(path), 1, 1, "", "config path does not exist", "pass a YAML file or a directory of them")]
    limit = max_file_bytes(env)
    if isinstance(limit, ConfigIssue):
        return [], [limit]
    files, issues = scan_config(path)
    if not files and not issues:
        return [], [ConfigIssue(str(path), 1, 1, "", "no .yaml or .yml files in this directory", "add a config file")]
    documents: list[SourceDocument] = []
    with collector_paused():
        for file in files:
            text = _read_text(file, limit)
            if isinstance(text, ConfigIssue):
                issues.append(text)
                continue
            if fast is not None and len(text) >= fast_min_bytes:
                read = fast(text, env, str(file))
                if read is not None:
                    documents.append(read)
                    continue
            # Aliases may copy in as much text as one file may hold (yamlsafe.YamlLimits.max_alias_chars).
            document, found = parse_yaml(text.decode("utf-8"), str(file), env, YamlLimits(max_alias_chars=limit))
            issues.extend(found)
            if document is not None:
                documents.append(document)
    return documents, issues


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a config load.

    Loading allocates objects by the million for a large file and keeps most of them: the
    collector would rescan the growing heap again and again (half the time of a load).
    What the stages build holds no reference cycles, so nothing waits for the collector.

    On the way out, what the load kept would be young: the next collections would walk all of it twice on its way to
    the oldest generation (1.5 CPU s after 40 MB of collections that share nothing).  When nothing is frozen, it is
    handed to the oldest generation at once (``freeze`` then ``unfreeze`` moves every tracked object there without
    a walk): full collections still see it, so a cycle made meanwhile is still collected, only later.  A server has
    frozen its start-up heap (``server.app.settle_heap``): ``unfreeze`` would give that back, so then nothing moves.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()
