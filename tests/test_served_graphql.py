"""Each catalog's GraphQL is built once, beside the catalog (which knows nothing of GraphQL), and never serves broken."""

from __future__ import annotations

import dataclasses
import gc
from pathlib import Path

import pytest

from searchd.catalog import compile_catalog
from searchd.config import load_spec
from searchd.modules import default_registry
from searchd.query.served import ServedGraphQL
from searchd.server import open_services
from tests.conftest import BACKENDS, QUICKSTART, ClientFactory
from tests.test_reload_api import ARTICLES, CONFIG, edit, services_of, started, titles

pytestmark = pytest.mark.parametrize("storage_backend", BACKENDS, indirect=True)

# Generated GraphQL type names clash: Article's group hits are typed ArticleGroupHit.
CLASHING = "\n  - name: ArticleGroupHit\n    properties:\n      - {name: text, type: TEXT}\n"


def test_a_catalogs_graphql_is_built_once_and_dropped_with_the_catalog() -> None:
    spec = load_spec(QUICKSTART, default_registry(), environ={})
    served = ServedGraphQL()
    first, second = compile_catalog(spec, default_registry()), compile_catalog(spec, default_registry())

    built = served.of(first)
    assert built is not None and served.of(first) is built
    assert built.schema.query_type is not None and set(built.schema.query_type.fields) == {"Get", "Aggregate"}
    assert built.documents.schema is built.schema and built.documents.max_depth == spec.server.limits.max_query_depth
    other = served.of(second)
    assert other is not None and other is not built and served.size == 2

    del first, built
    gc.collect()
    assert served.size == 1 and served.of(second) is other


def test_a_catalog_without_collections_has_nothing_to_query() -> None:
    spec = load_spec(QUICKSTART, default_registry(), environ={})
    empty = compile_catalog(dataclasses.replace(spec, collections=()), default_registry())
    assert ServedGraphQL().of(empty) is None


def test_a_reload_whose_graphql_schema_cannot_be_built_never_serves(client_factory: ClientFactory, tmp_path: Path) -> None:
    config_path = tmp_path / "searchd.yaml"
    config_path.write_text(CONFIG, encoding="utf-8")
    client = started(client_factory, config_path, ARTICLES)
    services = services_of(client)
    before = services.holder.current
    query = '{ Get { Article(bm25: {query: "a003z"}) { title } } }'

    edit(config_path, ("      - {name: text, type: TEXT}\n", "      - {name: text, type: TEXT}\n" + CLASHING))
    with pytest.raises(TypeError, match="ArticleGroupHit"):
        services.config.submit("test").result()
    assert services.holder.current is before
    assert titles(client, query) == ["article 3 on a003z"]
    assert client.get("/v1/schema/ArticleGroupHit").status_code == 404


def test_a_start_on_a_config_whose_graphql_schema_cannot_be_built_fails(tmp_path: Path) -> None:
    config = tmp_path / "searchd.yaml"
    config.write_text(CONFIG + CLASHING.lstrip("\n"), encoding="utf-8")
    with pytest.raises(TypeError, match="ArticleGroupHit"):
        open_services(config, tmp_path / "data")
