"""Issue #13, the query cost model: every GraphQL request is costed before it runs, and refused (422) over a limit.

Also query admission (a bounded number run at once, queued with a timeout, cancelled past
server.limits.queryTimeout) and per-key rate limits (429 with Retry-After).  Each refusal is
checked to come before any engine work (tests.engine_calls counts it).
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from starlette.testclient import TestClient

from searchd.config import load_spec
from searchd.config.spec import LimitsSpec
from searchd.modules.registry import default_registry
from searchd.query.search import PARALLEL_SEARCHES
from tests.conftest import QUICKSTART, ClientFactory, example_objects, wait_for
from tests.engine_calls import counted

OBJECTS = example_objects(QUICKSTART.parent / "objects.jsonl")
VECTOR = [0.05] * 256  # the quickstart's text vector has 256 dimensions
WriteConfig = Callable[..., Path]


def quickstart(write_config: WriteConfig, client_factory: ClientFactory, **limits: Any) -> TestClient:
    data = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    data["server"] = {"reload": {"watch": False}, **({"limits": limits} if limits else {})}
    client = client_factory(write_config(json.dumps(data)))
    assert client.post("/v1/batch/objects", json={"objects": OBJECTS}).status_code == 200
    return client


@pytest.fixture
def served(write_config: WriteConfig, client_factory: ClientFactory) -> TestClient:
    return quickstart(write_config, client_factory)


def post(client: TestClient, query: str, variables: Any = None, **headers: str) -> Any:
    body: dict[str, Any] = {"query": query} if variables is None else {"query": query, "variables": variables}
    return client.post("/v1/graphql", content=orjson.dumps(body), headers={"Content-Type": "application/json", **headers})


def post_nested_filter(client: TestClient, depth: int) -> Any:
    """``nested_filter(depth)`` as the where variable, written out by hand: it nests deeper than JSON encoders recurse."""
    leaf = '{"path": ["title"], "operator": "Equal", "valueText": "x"}'
    where = '{"operator": "Not", "operands": [' * (depth - 1) + leaf + "]}" * (depth - 1)
    body = '{"query": ' + json.dumps(WHERE_QUERY) + ', "variables": {"w": ' + where + "}}"
    return client.post("/v1/graphql", content=body.encode(), headers={"Content-Type": "application/json"})


def refusal(response: Any) -> str:
    assert response.status_code == 422, response.text
    (error,) = response.json()["error"]
    message: str = error["message"]
    return message


def aliases(n: int, arguments: str = "nearVector: {vector: $v}, limit: 10", fields: str = "title _additional { id distance }") -> str:
    return "query($v: Vector!) { Get { " + " ".join(f"a{i}: Article({arguments}) {{ {fields} }}" for i in range(n)) + " } }"


def or_filter(n: int) -> dict[str, Any]:
    return {"operator": "Or", "operands": [{"path": ["title"], "operator": "Equal", "valueText": f"t{i}"} for i in range(n)]}


def nested_filter(depth: int) -> dict[str, Any]:
    where: dict[str, Any] = {"path": ["title"], "operator": "Equal", "valueText": "x"}
    for _ in range(depth - 1):
        where = {"operator": "Not", "operands": [where]}
    return where


WHERE_QUERY = "query($w: WhereInpObj) { Get { Article(where: $w, limit: 3) { title } } }"


# -- settings -----------------------------------------------------------------------------------


def test_default_query_limits() -> None:
    limits = load_spec(QUICKSTART, default_registry()).server.limits
    assert limits == LimitsSpec()
    assert (limits.max_query_tokens, limits.max_query_cost, limits.max_searches_per_query, limits.max_filter_operands, limits.max_filter_depth) == (20_000, 500_000, 100, 2_000, 10)
    assert (limits.max_concurrent_queries, limits.queue_timeout, limits.query_timeout, limits.rate_limit.of("anyone"), dict(limits.rate_limit.keys)) == (8, 10.0, 30.0, None, {})


def test_limits_are_read_from_the_config(write_config: WriteConfig) -> None:
    data = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    data["server"] = {
        "limits": {
            "maxQueryTokens": 300, "maxQueryCost": 7, "maxSearchesPerQuery": 2, "maxFilterOperands": 3, "maxFilterDepth": 4,
            "maxConcurrentQueries": 5, "queueTimeout": 0.5, "queryTimeout": 2,
            "rateLimit": {"requestsPerSecond": 2.5, "keys": {"bulk": {"requestsPerSecond": 100, "burst": 7}}},
        }
    }
    limits = load_spec(write_config(json.dumps(data)), default_registry()).server.limits
    assert (limits.max_query_tokens, limits.max_query_cost, limits.max_searches_per_query, limits.max_filter_operands, limits.max_filter_depth) == (300, 7, 2, 3, 4)
    assert (limits.max_concurrent_queries, limits.queue_timeout, limits.query_timeout) == (5, 0.5, 2)
    rate = limits.rate_limit
    anyone, bulk = rate.of("anyone"), rate.of("bulk")
    assert anyone is not None and bulk is not None
    assert (anyone.requests_per_second, anyone.capacity, bulk.requests_per_second, bulk.capacity) == (2.5, 3, 100, 7)  # burst: the rate, rounded up


@pytest.mark.parametrize(
    ("setting", "value"),
    [("maxQueryCost", 0), ("maxSearchesPerQuery", 0), ("maxFilterDepth", 0), ("queueTimeout", 0), ("queryTimeout", -1), ("maxConcurrentQueries", "4"), ("rateLimit", {"burst": 3})],
)
def test_bad_limit_settings_are_refused(write_config: WriteConfig, setting: str, value: Any) -> None:
    data = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    data["server"] = {"limits": {setting: value}}
    with pytest.raises(Exception, match=rf"server\.limits\.{setting}|limits.*{setting}"):
        load_spec(write_config(json.dumps(data)), default_registry())


# -- the documents: refused before any work -------------------------------------------------


def test_ten_thousand_aliased_near_vector_searches_are_refused_before_parsing(served: TestClient) -> None:
    query = aliases(10_000)
    assert len(query) > 500_000
    with counted(served) as calls:
        message = refusal(post(served, query, {"v": VECTOR}))
    assert message.startswith("this query has more than 20000 tokens") and "; the limit is 20000 (server.limits.maxQueryTokens)" in message
    assert sum(calls.values()) == 0
    # Counted in the text, too: 10,000 aliases without a brace among them (a fragment per alias is the same size).
    names = " ".join(f"a{i}: title" for i in range(10_000))
    with counted(served) as calls:
        message = refusal(post(served, "{ Get { Article { " + names + " } } }"))
    assert message.startswith("this query has more than 20000 tokens; the limit is 20000 (server.limits.maxQueryTokens)")
    assert sum(calls.values()) == 0


def test_searches_per_query(served: TestClient) -> None:
    with counted(served) as calls:
        message = refusal(post(served, aliases(101), {"v": VECTOR}))
    assert message.startswith("this query has more than 100 searches; the limit is 100 (server.limits.maxSearchesPerQuery)")
    assert sum(calls.values()) == 0
    body = post(served, aliases(100), {"v": VECTOR}).json()
    assert "errors" not in body and len(body["data"]["Get"]) == 100


def test_bm25_hybrid_listings_and_aggregates_count_as_searches(served: TestClient) -> None:
    kinds = ['bm25: {query: "bread"}', 'hybrid: {query: "bread"}', "limit: 2", 'nearText: {concepts: ["bread"]}']
    query = "{ Get { " + " ".join(f"g{i}: Article({kinds[i % 4]}) {{ title }}" for i in range(60)) + " } Aggregate { "
    query += " ".join(f"x{i}: Article {{ meta {{ count }} }}" for i in range(41)) + " } }"
    with counted(served) as calls:
        assert refusal(post(served, query)).startswith("this query has more than 100 searches")
    assert sum(calls.values()) == 0


def test_fragments_are_expanded_as_the_executor_would(served: TestClient) -> None:
    fragment = "fragment F on GetObjectsObj { " + " ".join(f"a{i}: Article(limit: 1) {{ title }}" for i in range(60)) + " }"
    body = post(served, "{ Get { ...F ...F } } " + fragment).json()  # one fragment twice in one selection: merged, 60 searches
    assert "errors" not in body and len(body["data"]["Get"]) == 60
    with counted(served) as calls:  # two Gets each run the fragment's 60 searches
        assert refusal(post(served, "{ one: Get { ...F } two: Get { ...F } } " + fragment)).startswith("this query has more than 100 searches")
    assert sum(calls.values()) == 0
    nested = "{ one: Get { ...G } two: Get { ...G } } fragment G on GetObjectsObj { ...F } " + fragment
    assert refusal(post(served, nested)).startswith("this query has more than 100 searches")
    inline = "{ one: Get { ... on GetObjectsObj { ...F } } two: Get { ...F } } " + fragment
    assert refusal(post(served, inline)).startswith("this query has more than 100 searches")


def test_fragment_diamonds_and_doublings_cost_what_they_run(served: TestClient) -> None:
    """Each fragment counts once per selection set (as graphql-core merges it), so 2^30 paths are one search, not a refusal."""
    n = 30
    diamond = "{ Get { ...F0 } }\n" + "".join(
        f"fragment F{i} on GetObjectsObj {{ ...A{i} ...B{i} }} fragment A{i} on GetObjectsObj {{ ...F{i + 1} }} fragment B{i} on GetObjectsObj {{ ...F{i + 1} }}\n" for i in range(n)
    )
    diamond += f"fragment F{n} on GetObjectsObj {{ Article(limit: 2) {{ title }} }}"
    with counted(served) as calls:
        body = post(served, diamond).json()
    assert body == {"data": {"Get": {"Article": [{"title": o["properties"]["title"]} for o in OBJECTS[:2]]}}}
    assert calls["list_objects"] == 1


def test_cost_counts_candidates_rows_and_fields(write_config: WriteConfig, client_factory: ClientFactory) -> None:
    client = quickstart(write_config, client_factory, maxQueryCost=100)
    # A listing: limit 30 fetched, 30 rows x 3 fields (title, _additional, id) = 120.
    with counted(client) as calls:
        assert refusal(post(client, "{ Get { Article(limit: 30) { title _additional { id } } } }")) == (
            "this query costs 120; the limit is 100 (server.limits.maxQueryCost) "
            "(ask for fewer results (limit), fewer fields or fewer searches; docs/operations.md explains the cost)"
        )
        # Variables count as literals do; aliased fields each count per row: 5 + 5 x 20 = 105.
        assert refusal(post(client, "query($n: Int) { Get { Article(limit: $n) { " + " ".join(f"t{i}: title" for i in range(20)) + " } } }", {"n": 5})).startswith("this query costs 105;")
        # A vector search fetches at least the index's ef (64 here), and twice that under a filter: 128 + 1 x 1.
        where = '{path: ["title"], operator: Like, valueText: "*"}'
        assert refusal(post(client, f"query($v: Vector!) {{ Get {{ Article(nearVector: {{vector: $v}}, limit: 1, where: {where}) {{ title }} }} }}", {"v": VECTOR})).startswith("this query costs 129;")
        # hybrid: two legs of at least 100 candidates each.
        assert refusal(post(client, '{ Get { Article(hybrid: {query: "bread"}, limit: 1) { title } } }')).startswith("this query costs 201;")
    assert sum(calls.values()) == 0
    assert post(client, "query($n: Int) { Get { Article(limit: $n) { title _additional { id } } } }", {"n": 20}).status_code == 200  # 20 + 60
    assert post(client, "query($v: Vector!) { Get { Article(nearVector: {vector: $v}, limit: 1) { title } } }", {"v": VECTOR}).status_code == 200  # 64 + 1


def test_an_aggregate_costs_the_objects_it_reads_and_a_count_none(write_config: WriteConfig, client_factory: ClientFactory) -> None:
    # An Aggregate without near* reads every object its filter passes (up to queryLimitMax x 100): it costs the
    # collection's size now, not queryLimitMax.  meta { count } alone counts them without reading one.
    client = quickstart(write_config, client_factory, maxQueryCost=100)
    size = len(OBJECTS)
    with counted(client) as calls:
        many = "{ Aggregate { " + " ".join(f"a{i}: Article {{ wordCount {{ mean }} }}" for i in range(12)) + " } }"
        assert refusal(post(client, many)).startswith(f"this query costs {12 * (size + 2)}; the limit is 100")  # 12 x (8 read + 2 fields)
    assert sum(calls.values()) == 0
    answer = post(client, "{ Aggregate { Article { wordCount { mean } } } }").json()  # 10
    assert answer["data"]["Aggregate"]["Article"][0]["wordCount"]["mean"] == pytest.approx(sum(o["properties"]["wordCount"] for o in OBJECTS) / size)
    counts = "{ Aggregate { " + " ".join(f"a{i}: Article {{ meta {{ count }} }}" for i in range(20)) + " } }"  # 20 x 2 fields, nothing read
    response = post(client, counts)
    assert [group[0]["meta"]["count"] for group in response.json()["data"]["Aggregate"].values()] == [size] * 20, response.text
    more = [{"class": "Article", "properties": {"title": f"extra {i}", "wordCount": i}} for i in range(20)]
    assert client.post("/v1/batch/objects", json={"objects": more}).status_code == 200
    assert refusal(post(client, many)).startswith(f"this query costs {12 * (size + 20 + 2)};")  # the size now, after the writes


def test_a_count_is_not_bound_by_the_aggregate_scan(write_config: WriteConfig, client_factory: ClientFactory) -> None:
    client = quickstart(write_config, client_factory, queryLimitMax=1)  # an Aggregate reads at most 1 x 100 objects
    more = [{"class": "Article", "properties": {"title": f"extra {i}", "wordCount": i}} for i in range(100)]
    assert client.post("/v1/batch/objects", json={"objects": more}).status_code == 200
    counted_only = post(client, "{ Aggregate { Article { meta { count } } } }").json()
    assert counted_only == {"data": {"Aggregate": {"Article": [{"meta": {"count": 108}}]}}}
    read = post(client, "{ Aggregate { Article { meta { count } wordCount { count } } } }").json()
    assert read["data"]["Aggregate"]["Article"] is None
    assert read["errors"][0]["message"].startswith("Aggregate would cover 108 objects in 'Article', more than this server aggregates at once (100)")


def test_many_aliased_fields_are_refused_by_cost(served: TestClient) -> None:
    fields = " ".join(f"f{i}: title" for i in range(5000))
    with counted(served) as calls:
        message = refusal(post(served, "{ Get { Article { " + fields + " } } }"))
    assert message.startswith("this query costs 500100; the limit is 500000 (server.limits.maxQueryCost)")  # 100 fetched + 100 rows x 5000
    assert sum(calls.values()) == 0


def test_a_response_over_max_response_bytes_is_refused_before_it_is_encoded(write_config: WriteConfig, client_factory: ClientFactory) -> None:
    # The independent check's shape: a cheap query (cost about 1,300 here) whose aliases repeat a long text field.
    client = quickstart(write_config, client_factory, maxResponseBytes=200_000)
    long_body = {"class": "Article", "properties": {"title": "long", "body": "word " * 4_000}}  # 20,000 characters
    assert client.post("/v1/objects", json=long_body).status_code == 200
    fields = " ".join(f"f{i}: body" for i in range(10))
    query = "{ Get { " + " ".join(f"a{i}: Article(limit: 100) {{ {fields} }}" for i in range(10)) + " } }"  # >= 10 x 10 x 20,000 bytes
    assert refusal(post(client, query)) == (
        "this query's response would be more than 200000 bytes of JSON (server.limits.maxResponseBytes) (ask for fewer results, "
        "fewer aliases or fewer large text and blob fields (a field repeated under several aliases counts each time))"
    )
    answer = post(client, "{ Get { Article(limit: 100) { body } } }")  # the same rows and field once: about 21,000 bytes
    assert answer.status_code == 200 and "word word" in answer.text
    batch = client.post("/v1/graphql/batch", json=[{"query": "{ Get { Article(limit: 100) { " + fields + " } } }"}] * 2)  # 2 x 200,000: the batch as a whole
    assert refusal(batch).startswith("this query's response would be more than 200000 bytes")


def test_each_query_of_a_graphql_batch_is_costed_before_any_runs(served: TestClient) -> None:
    small, large = {"query": aliases(60), "variables": {"v": VECTOR}}, {"query": aliases(101), "variables": {"v": VECTOR}}
    with counted(served) as calls:
        response = served.post("/v1/graphql/batch", json=[small, large])
    assert refusal(response).startswith("this query has more than 100 searches; the limit is 100 (server.limits.maxSearchesPerQuery)")
    assert sum(calls.values()) == 0  # the first query did not run either
    response = served.post("/v1/graphql/batch", json=[small, small])  # 120 searches, 60 in each query: they run one after the other
    assert response.status_code == 200 and [len(answer["data"]["Get"]) for answer in response.json()] == [60, 60]


# -- filters ------------------------------------------------------------------------------------


def test_filter_operands(served: TestClient) -> None:
    with counted(served) as calls:
        assert refusal(post(served, WHERE_QUERY, {"w": or_filter(5_000)})) == (
            "this query has at least 5000 filter operands in one where filter; the limit is 2000 (server.limits.maxFilterOperands) "
            "(use ContainsAny with fewer values, or narrow the filter)"
        )
        # Fifty thousand: the body's objects and lists are counted (as tokens) before the JSON is even parsed.
        assert refusal(post(served, WHERE_QUERY, {"w": or_filter(50_000)})) == (
            "this query has more than 20000 tokens (counting the braces and brackets of the request body); the limit is 20000 "
            "(server.limits.maxQueryTokens) (send fewer or smaller variables, or split the query)"
        )
        # As a literal (2001 operands of Or would be over the token limit first): a ContainsAny list's values count too.
        literal = '{ Get { Article(where: {path: ["tags"], operator: ContainsAny, valueText: [' + ", ".join(f'"t{i}"' for i in range(2001)) + "]}) { title } } }"
        assert refusal(post(served, literal)).startswith("this query has at least 2001 filter operands in one where filter; the limit is 2000")
        contains = {"path": ["tags"], "operator": "ContainsAny", "valueText": [f"tag{i}" for i in range(2001)]}
        assert refusal(post(served, WHERE_QUERY, {"w": contains})).startswith("this query has at least 2001 filter operands")
        aggregate = "query($w: WhereInpObj) { Aggregate { Article(where: $w) { meta { count } } } }"
        assert refusal(post(served, aggregate, {"w": or_filter(2001)})).startswith("this query has at least 2001 filter operands")
    assert sum(calls.values()) == 0
    body = post(served, WHERE_QUERY, {"w": or_filter(1999) | {"operands": [*or_filter(1999)["operands"], {"path": ["title"], "operator": "Equal", "valueText": "Baking rye bread"}]}}).json()
    assert body == {"data": {"Get": {"Article": [{"title": "Baking rye bread"}]}}}  # 2000 operands: answered


def test_filter_depth(served: TestClient) -> None:
    with counted(served) as calls:
        for depth in (11, 25):
            assert refusal(post_nested_filter(served, depth)) == (
                "this query has a where filter nested more than 10 levels deep; the limit is 10 (server.limits.maxFilterDepth) "
                "(flatten the filter: And and Or take any number of operands)"
            )
        # Deeper than graphql-core's own coercion goes: the JSON depth limit of the request body refuses it first.
        assert refusal(post_nested_filter(served, 500)).startswith("the request body nests JSON objects and arrays more than 64 levels deep")
        literal = "{ Get { Article(where: " + "{operator: Not, operands: [" * 10 + '{path: ["title"], operator: Equal, valueText: "x"}' + "]}" * 10 + ") { title } } }"
        assert refusal(post(served, literal)).startswith("this query has a where filter nested more than 10 levels deep")
    assert sum(calls.values()) == 0
    body = post(served, WHERE_QUERY, {"w": nested_filter(10)}).json()  # nine Nots around one condition: depth 10
    assert "errors" not in body



def test_a_literal_nested_deeper_than_the_limits_allow_is_refused_before_parsing(served: TestClient) -> None:
    """graphql-core's parser is recursive: a literal 150 levels deep must get the limit's 422, not the parser's own syntax error."""
    for depth in (40, 150):
        literal = "{ Get { Article(where: " + "{operator: Not, operands: [" * depth + '{path: ["title"], operator: Equal, valueText: "x"}' + "]}" * depth + ") { title } } }"
        with counted(served) as calls:
            assert refusal(post(served, literal)) == (
                "this query nests brackets more than 66 levels deep, deeper than any query can within the limits of 30 (server.limits.maxQueryDepth) "
                "and 10 (server.limits.maxFilterDepth) (flatten the filter: And and Or take any number of operands)"
            )
        assert sum(calls.values()) == 0
    brackets = "{ Get { Article(nearVector: {vector: $v}, where: " + "{operator: Not, operands: [" * 9 + '{path: ["title"], operator: Equal, valueText: "x"}' + "]}" * 9 + ") { title } } }"
    response = post(served, "query($v: Vector!) " + brackets, {"v": VECTOR})  # at maxFilterDepth, with a search: answered
    assert response.status_code == 200 and "Article" in response.json()["data"]["Get"], response.text


# -- admission: slots, queue timeout, query timeout --------------------------------------------------


@pytest.fixture
def one_slot(write_config: WriteConfig, client_factory: ClientFactory) -> TestClient:
    return quickstart(write_config, client_factory, maxConcurrentQueries=1, queueTimeout=0.2)


LISTING = "{ Get { Article(limit: 1) { title } } }"


def test_a_query_beyond_the_slots_waits_then_gets_503_while_probes_answer(one_slot: TestClient) -> None:
    release, entered = threading.Event(), threading.Event()

    def hold(name: str, args: tuple[Any, ...]) -> None:
        entered.set()
        assert release.wait(30)

    with counted(one_slot, hold) as calls, concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, one_slot, LISTING)
        assert entered.wait(30)  # the first query holds the only slot, inside the engine
        for path in ("/v1/.well-known/live", "/v1/.well-known/ready", "/v1/meta", "/v1/schema"):
            assert one_slot.get(path).status_code == 200  # never queued behind queries
        second = post(one_slot, LISTING)
        assert second.status_code == 503 and second.headers["Retry-After"] == "1"
        assert second.json() == {
            "error": [
                {
                    "message": "the server is busy: 1 queries are running (server.limits.maxConcurrentQueries is 1) and this one waited 0.2 s "
                    "for a slot (server.limits.queueTimeout) (retry after a moment, or send fewer queries at once)"
                }
            ]
        }
        assert calls["list_objects"] == 1  # the refused query did no work
        release.set()
        assert first.result().status_code == 200
    assert post(one_slot, LISTING).json() == {"data": {"Get": {"Article": [{"title": OBJECTS[0]["properties"]["title"]}]}}}


def test_queued_queries_run_in_order_when_a_slot_frees(write_config: WriteConfig, client_factory: ClientFactory) -> None:
    client = quickstart(write_config, client_factory, maxConcurrentQueries=1, queueTimeout=60)
    gate = client.app.state.services.queries  # type: ignore[attr-defined]
    release, entered = threading.Event(), threading.Event()
    order: list[int] = []  # the offset of each listing, as it reaches the engine

    def hold(name: str, args: tuple[Any, ...]) -> None:
        order.append(args[2])  # list_objects(collection, limit, offset, ...)
        entered.set()
        assert release.wait(30)

    with counted(client, hold), concurrent.futures.ThreadPoolExecutor(3) as pool:
        first = pool.submit(post, client, LISTING)
        assert entered.wait(30)
        queued = []
        for offset in (1, 2):
            queued.append(pool.submit(post, client, f"{{ Get {{ Article(limit: 1, offset: {offset}) {{ title }} }} }}"))
            wait_for(lambda: gate.waiting == len(queued), f"{len(queued)} queued queries")
        release.set()
        assert first.result().status_code == 200
        assert [q.result().json()["data"]["Get"]["Article"][0]["title"] for q in queued] == [OBJECTS[1]["properties"]["title"], OBJECTS[2]["properties"]["title"]]
    assert order == [0, 1, 2] and gate.running == 0 and gate.waiting == 0  # in order of arrival


def test_a_query_past_its_timeout_is_cancelled_503_and_starts_no_more_searches(write_config: WriteConfig, client_factory: ClientFactory) -> None:
    timeout = 0.3
    client = quickstart(write_config, client_factory, maxConcurrentQueries=1, queryTimeout=timeout)
    first_call: list[float] = []

    def slow_search(name: str, args: tuple[Any, ...]) -> None:
        """A search that runs until its query's time is up (the query began before the first search did)."""
        if name == "search_hits":
            first_call.append(time.monotonic())
            wait_for(lambda: time.monotonic() > first_call[0] + timeout, "the query's deadline")

    with counted(client, slow_search) as calls:
        response = post(client, aliases(20), {"v": VECTOR})
    assert response.status_code == 503, response.text
    assert response.json()["error"][0]["message"] == (
        f"the query ran longer than {timeout:g} s and was cancelled (server.limits.queryTimeout) "
        "(ask for less (fewer searches, smaller limits), or raise server.limits.queryTimeout)"
    )
    assert calls["search_hits"] <= PARALLEL_SEARCHES < 20  # the searches still waiting never started
    assert client.app.state.services.queries.running == 0  # type: ignore[attr-defined]
    body = post(client, aliases(2), {"v": VECTOR}).json()  # the slot is free again
    assert "errors" not in body and len(body["data"]["Get"]) == 2


# -- per-key rate limits ------------------------------------------------------------------------


def test_rate_limit_without_keys_is_one_bucket_and_spares_probes(write_config: WriteConfig, client_factory: ClientFactory) -> None:
    client = quickstart(write_config, client_factory, rateLimit={"requestsPerSecond": 0.001, "burst": 3})  # the import takes one
    assert post(client, LISTING).status_code == 200
    assert client.get("/v1/schema").status_code == 200
    refused = post(client, LISTING)
    assert refused.status_code == 429
    assert 900 <= int(refused.headers["Retry-After"]) <= 1000  # a token every 1,000 s
    message = refused.json()["error"][0]["message"]
    assert message.startswith("requests without an API key made more than 0.001 requests per second (burst 3); the limit is server.limits.rateLimit (retry after ")
    for _ in range(5):
        assert client.get("/v1/.well-known/live").status_code == 200 and client.get("/v1/.well-known/ready").status_code == 200


def test_rate_limits_are_per_key(write_config: WriteConfig, client_factory: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = {"SEARCHD_TEST_ADMIN_KEY": "adm-rate-5e1c9b27d40f", "SEARCHD_TEST_SLOW_KEY": "slow-rate-8a2f6c13e9b7", "SEARCHD_TEST_FAST_KEY": "fast-rate-3d7b0e94a1c6"}
    for name, value in keys.items():
        monkeypatch.setenv(name, value)
    data = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    data["server"] = {
        "reload": {"watch": False},
        "auth": {"apiKeys": [{"name": "ops", "key": "${SEARCHD_TEST_ADMIN_KEY}", "role": "admin"}, {"name": "slow", "key": "${SEARCHD_TEST_SLOW_KEY}"}, {"name": "fast", "key": "${SEARCHD_TEST_FAST_KEY}"}]},
        "limits": {"rateLimit": {"requestsPerSecond": 0.001, "burst": 1, "keys": {"fast": {"requestsPerSecond": 1000, "burst": 1000}}}},
    }
    client = client_factory(write_config(json.dumps(data)))
    bearer = {name: f"Bearer {keys[f'SEARCHD_TEST_{name.upper()}_KEY']}" for name in ("admin", "slow", "fast")}
    assert client.post("/v1/batch/objects", json={"objects": OBJECTS}, headers={"Authorization": bearer["admin"]}).status_code == 200
    assert post(client, LISTING, Authorization=bearer["slow"]).status_code == 200
    refused = post(client, LISTING, Authorization=bearer["slow"])
    assert refused.status_code == 429 and "key 'slow' made more than 0.001 requests per second (burst 1)" in refused.json()["error"][0]["message"]
    assert all(post(client, LISTING, Authorization=bearer["fast"]).status_code == 200 for _ in range(10))
    assert client.get("/v1/schema", headers={"Authorization": bearer["admin"]}).status_code == 429  # its one token went on the import
    assert post(client, LISTING).status_code == 401  # authentication comes first: no bucket for unknown callers


# -- the estimate itself stays cheap --------------------------------------------------------------


def test_the_walk_is_bounded_by_the_cost_limit(write_config: WriteConfig, client_factory: ClientFactory) -> None:
    """Fields a fragment repeats (merged by graphql-core) still count as steps of the walk: no document walks for long."""
    client = quickstart(write_config, client_factory, maxQueryCost=1000)
    fragment = "fragment X on Article { " + " ".join(["title"] * 400) + " }"
    query = "{ Get { " + " ".join(f"a{i}: Article(limit: 1) {{ ...X }}" for i in range(3)) + " } } " + fragment
    with counted(client) as calls:
        assert refusal(post(client, query)).startswith("this query has more than 1000 field selections (fragments expanded); the limit is 1000 (server.limits.maxQueryCost)")
    assert sum(calls.values()) == 0


def test_a_reload_changes_the_limits_for_the_next_request(write_config: WriteConfig, client_factory: ClientFactory) -> None:
    client = quickstart(write_config, client_factory, maxSearchesPerQuery=3)
    assert refusal(post(client, aliases(4), {"v": VECTOR})).startswith("this query has more than 3 searches; the limit is 3 (server.limits.maxSearchesPerQuery)")
    data = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    data["server"] = {"reload": {"watch": False}, "limits": {"maxSearchesPerQuery": 4, "maxConcurrentQueries": 2}}
    write_config(json.dumps(data))
    reload = client.post("/v1/config/reload")
    assert reload.status_code == 200 and reload.json()["result"] == "applied", reload.text
    body = post(client, aliases(4), {"v": VECTOR}).json()
    assert "errors" not in body and len(body["data"]["Get"]) == 4
    assert refusal(post(client, aliases(5), {"v": VECTOR})).startswith("this query has more than 4 searches; the limit is 4")
