"""Weaviate class JSON (what a client sends to POST /v1/schema) → a searchd YAML collection.

searchd's schema lives in YAML, so a client's collection creation is refused; this turns the
body it sent (or GET /v1/schema's answer, for a round trip) into the block to paste.  Settings
that have a searchd counterpart are carried over; the rest are named in ``warnings`` (ignored,
with why) or ``errors`` (the collection cannot be served as asked), never dropped silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from searchd.config.capabilities import KnownModules
from searchd.config.loader import parse_yaml
from searchd.config.semantic import semantic_issues
from searchd.config.spec import Distance, IndexType, Tokenization, spec_from_data
from searchd.config.validate import schema_issues
from searchd.errors import ConfigIssue

DATA_TYPES = {
    "text": "TEXT",
    "string": "TEXT",  # deprecated in Weaviate, the same as text
    "text[]": "TEXT[]",
    "string[]": "TEXT[]",
    "int": "INT",
    "number": "NUMBER",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "uuid": "UUID",
    "blob": "BLOB",
}
TOKENIZATIONS = {t.value for t in Tokenization}
DISTANCES = {d.value for d in Distance}
# Vectorizer keys copied as they are; the field lists and weights are translated.
VECTORIZER_KEYS = ("model", "dimensions", "lateChunking", "truncate", "baseURL")
FIELD_KEYS = ("properties", "textFields", "imageFields", "weights", "vectorizeClassName")
LEGACY_VECTOR = "default"  # the name a single (unnamed) Weaviate vector gets


@dataclass
class Conversion:
    collections: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def yaml(self) -> str:
        """The collections as a config file (it can be dropped into a config directory as it is)."""
        body = yaml.safe_dump({"collections": self.collections}, sort_keys=False, default_flow_style=None, allow_unicode=True, width=120)
        return "# Written by 'searchd schema-from-json' from Weaviate class JSON.\n" + body


def classes_of(body: Any) -> list[Any]:
    """One class JSON, a list of them, or GET /v1/schema's {"classes": [...]}."""
    if isinstance(body, dict) and isinstance(body.get("classes"), list):
        return list(body["classes"])
    return list(body) if isinstance(body, list) else [body]


def convert(body: Any, dimensions: Mapping[str, int] | None = None) -> Conversion:
    """``dimensions`` gives the width of vectors objects bring themselves, by vector name (Weaviate does not ask for it)."""
    out = Conversion()
    for cls in classes_of(body):
        if not isinstance(cls, dict) or not isinstance(cls.get("class"), str) or not cls["class"]:
            out.errors.append("a class JSON needs a 'class' name, e.g. {\"class\": \"Article\", \"properties\": [...]}")
            continue
        _Class(cls, dimensions or {}, out).convert()
    return out


def validate_text(text: str, file: str, modules: KnownModules) -> list[ConfigIssue]:
    """Every schema and semantic issue of one YAML document, as ``searchd validate`` finds them."""
    document, issues = parse_yaml(text, file, {})
    if document is None or issues:
        return issues
    found = [issue for _, issue in schema_issues(document.data, document.locator)]
    if found:
        return found
    return semantic_issues(spec_from_data(document.data, "."), document.locator, modules)


class _Class:
    def __init__(self, cls: dict[str, Any], dimensions: Mapping[str, int], out: Conversion) -> None:
        name = cls["class"]
        self.cls = cls
        self.name = name[0].upper() + name[1:]  # Weaviate capitalises class names
        self.dimensions = dimensions
        self.out = out

    def warn(self, message: str) -> None:
        self.out.warnings.append(f"{self.name}: {message}")

    def fail(self, message: str) -> None:
        self.out.errors.append(f"{self.name}: {message}")

    def convert(self) -> None:
        cls = self.cls
        collection: dict[str, Any] = {"name": self.name}
        if cls.get("description"):
            collection["description"] = cls["description"]
        properties = [p for p in (self._property(raw) for raw in cls.get("properties") or []) if p is not None]
        if properties:
            collection["properties"] = properties
        inverted = self._inverted(cls.get("invertedIndexConfig") or {})
        if inverted:
            collection["invertedIndex"] = inverted
        vectors = self._vectors()
        if vectors:
            collection["vectors"] = vectors
        self._unsupported()
        self.out.collections.append(collection)

    # -- properties ----------------------------------------------------------------

    def _property(self, raw: Any) -> dict[str, Any] | None:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            self.fail("every property needs a 'name' and a 'dataType'")
            return None
        name = raw["name"]
        data_type = (raw.get("dataType") or [None])[0]
        if data_type not in DATA_TYPES:
            if isinstance(data_type, str) and data_type[:1].isupper():
                self.fail(f"property '{name}' is a cross-reference to {data_type}; searchd has no references (store the target's id as a UUID property)")
            else:
                self.fail(f"property '{name}' has dataType {data_type!r}, which searchd does not store; use one of {', '.join(sorted(set(DATA_TYPES) - {'string', 'string[]'}))}")
            return None
        prop: dict[str, Any] = {"name": name, "type": DATA_TYPES[data_type]}
        if raw.get("description"):
            prop["description"] = raw["description"]
        tokenization = raw.get("tokenization")
        if tokenization is not None and prop["type"].startswith("TEXT"):
            if tokenization in TOKENIZATIONS:
                if tokenization != Tokenization.WORD.value:
                    prop["tokenization"] = tokenization
            else:
                self.fail(f"property '{name}' has tokenization {tokenization!r}; searchd offers {', '.join(sorted(TOKENIZATIONS))}")
        inverted = raw.get("indexInverted")  # deprecated: both indexes
        if raw.get("indexSearchable", inverted) is False and prop["type"].startswith("TEXT"):
            prop["indexSearchable"] = False
        if raw.get("indexFilterable", inverted) is False and prop["type"] != "BLOB":
            prop["indexFilterable"] = False
        if raw.get("textAnalyzer"):
            self.warn(f"property '{name}': textAnalyzer (ASCII folding, per-property stopwords) is not supported and is left out")
        return prop

    def _skipped(self, module: str) -> set[str]:
        """Properties whose moduleConfig tells ``module`` to skip them (the legacy single-vector form)."""
        return {
            p["name"]
            for p in self.cls.get("properties") or []
            if isinstance(p, dict) and isinstance(p.get("moduleConfig"), dict) and (p["moduleConfig"].get(module) or {}).get("skip") is True
        }

    # -- inverted index --------------------------------------------------------------

    def _inverted(self, config: dict[str, Any]) -> dict[str, Any]:
        inverted: dict[str, Any] = {}
        bm25 = {k: config["bm25"][k] for k in ("k1", "b") if isinstance(config.get("bm25"), dict) and config["bm25"].get(k) is not None}
        if bm25:
            inverted["bm25"] = bm25
        raw: dict[str, Any] = config["stopwords"] if isinstance(config.get("stopwords"), dict) else {}
        stopwords = {k: raw[k] for k in ("preset", "additions", "removals") if raw.get(k)}
        if stopwords.get("preset") not in (None, "en", "none"):
            self.fail(f"stopwords preset {stopwords['preset']!r} is not one of en, none")
        if stopwords:
            inverted["stopwords"] = stopwords
        if config.get("indexPropertyLength"):
            self.warn("indexPropertyLength: filters on a property's length are not supported")
        if config.get("stopwordPresets"):
            self.warn("stopwordPresets (named stopword lists) are not supported; use stopwords.additions")
        return inverted

    # -- vectors ---------------------------------------------------------------------

    def _vectors(self) -> dict[str, Any]:
        cls = self.cls
        named = cls.get("vectorConfig")
        if isinstance(named, dict) and named:
            return {name: v for name, raw in named.items() if (v := self._vector(name, raw)) is not None}
        module = cls.get("vectorizer") or "none"
        if module == "none" and LEGACY_VECTOR not in self.dimensions:
            self.warn(f"no vectorizer: the collection gets no vector (objects that bring vectors need one: pass --dimensions {LEGACY_VECTOR}=N)")
            return {}
        settings = dict((cls.get("moduleConfig") or {}).get(module) or {})
        if module != "none" and "properties" not in settings and "textFields" not in settings:
            skipped = self._skipped(module)
            if skipped:  # every TEXT property but the skipped ones
                texts = [p["name"] for p in cls.get("properties") or [] if isinstance(p, dict) and DATA_TYPES.get((p.get("dataType") or [None])[0], "").startswith("TEXT")]
                settings["properties"] = [n for n in texts if n not in skipped]
        raw = {"vectorizer": {module: settings}, "vectorIndexType": cls.get("vectorIndexType", "hnsw"), "vectorIndexConfig": cls.get("vectorIndexConfig") or {}}
        vector = self._vector(LEGACY_VECTOR, raw)
        return {LEGACY_VECTOR: vector} if vector is not None else {}

    def _vector(self, name: str, raw: Any) -> dict[str, Any] | None:
        vectorizers = raw.get("vectorizer") if isinstance(raw, dict) else None
        if not isinstance(vectorizers, dict) or len(vectorizers) != 1:
            self.fail(f"vector '{name}' needs exactly one vectorizer, as {{\"vectorizer\": {{\"text2vec-jinaai\": {{...}}}}}}")
            return None
        module, settings = next(iter(vectorizers.items()))
        vectorizer = self._vectorizer(name, module, dict(settings or {}))
        index = self._index(name, raw.get("vectorIndexType") or "hnsw", raw.get("vectorIndexConfig") or {})
        return {"vectorizer": vectorizer, "index": index}

    def _vectorizer(self, name: str, module: str, settings: dict[str, Any]) -> dict[str, Any]:
        vectorizer: dict[str, Any] = {"module": module}
        vectorizer.update({k: settings[k] for k in VECTORIZER_KEYS if settings.get(k) not in (None, False)})
        if module == "none":
            vectorizer = {"module": "none", "dimensions": self.dimensions.get(name, settings.get("dimensions"))}
            if vectorizer["dimensions"] is None:
                self.fail(f"vector '{name}' brings its own vectors: searchd needs their width; pass --dimensions {name}=N")
            return vectorizer
        text = settings.get("properties", settings.get("textFields"))
        images = settings.get("imageFields")
        if text is not None:
            vectorizer["textFields"] = list(text)
        if images is not None:
            vectorizer["imageFields"] = list(images)
        weights = settings.get("weights")
        if isinstance(weights, dict) and weights:
            if {"textFields", "imageFields"} & set(weights):  # Weaviate's positional form
                named = dict(zip(text or [], weights.get("textFields") or []))
                named.update(zip(images or [], weights.get("imageFields") or []))
                vectorizer["weights"] = named
            else:
                vectorizer["weights"] = dict(weights)
        if settings.get("vectorizeClassName"):
            self.warn(f"vector '{name}': vectorizeClassName is not supported (searchd embeds property values only)")
        ignored = sorted(set(settings) - set(VECTORIZER_KEYS) - set(FIELD_KEYS))
        if ignored:
            self.warn(f"vector '{name}': {module} settings {', '.join(ignored)} have no searchd counterpart and are left out")
        return vectorizer

    def _index(self, name: str, kind: str, config: dict[str, Any]) -> dict[str, Any]:
        declared = config.get("searchd")
        if isinstance(declared, dict) and declared.get("type") in {t.value for t in IndexType}:
            return dict(declared)  # GET /v1/schema's own record of the YAML index block
        distance = config.get("distance") or Distance.COSINE.value
        if distance not in DISTANCES:
            self.fail(f"vector '{name}': distance {distance!r} is not one of {', '.join(sorted(DISTANCES))}")
        if kind == "flat":
            index: dict[str, Any] = {"type": "flat", "distance": distance}
        else:
            if kind not in ("hnsw", "dynamic", "hfresh"):
                self.fail(f"vector '{name}': vectorIndexType {kind!r} is not one of hnsw, flat")
            elif kind != "hnsw":
                self.warn(f"vector '{name}': vectorIndexType {kind} becomes hnsw (searchd offers hnsw, annoy, flat, multivector)")
            multi = isinstance(config.get("multivector"), dict) and config["multivector"].get("enabled") is True
            index = {"type": "multivector" if multi else "hnsw", "distance": distance}
            index.update({k: config[k] for k in ("maxConnections", "efConstruction") if isinstance(config.get(k), int)})
            if isinstance(config.get("ef"), int) and config["ef"] > 0:  # -1: Weaviate's dynamic ef; searchd's default then
                index["ef"] = config["ef"]
        for quantizer in ("pq", "bq", "sq", "rq"):
            if isinstance(config.get(quantizer), dict) and config[quantizer].get("enabled"):
                self.warn(f"vector '{name}': {quantizer} compression is not supported (vectors are kept as float32)")
        return index

    def _unsupported(self) -> None:
        cls = self.cls
        if (cls.get("multiTenancyConfig") or {}).get("enabled"):
            self.fail("multi-tenancy is not supported; use one collection per tenant, or a tenant property and filters")
        if ((cls.get("replicationConfig") or {}).get("factor") or 1) > 1:
            self.warn("replicationConfig.factor > 1: a searchd process keeps one copy (replicate the data directory or run replicas on PostgreSQL)")
        modules = [k for k in (cls.get("moduleConfig") or {}) if "generative" in k or "reranker" in k]
        if modules:
            self.warn(f"{', '.join(modules)}: generative and reranker modules are not supported and are left out")
