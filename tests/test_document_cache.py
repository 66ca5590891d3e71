"""The GraphQL fast path: inline vectors lifted into variables, validated documents cached — same answers, same errors."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from searchd.query.document import lift_literals
from tests.conftest import MULTIMODAL, example_objects, graphql


@pytest.mark.parametrize(
    "source,rewritten,values",
    [
        ("{ Get { A(nearVector: {vector: [0.5, -2e-3, 3]}) { x } } }", "query($__searchd_vector_0: Vector!) { Get { A(nearVector: {vector: $__searchd_vector_0}) { x } } }", [[0.5, -0.002, 3]]),
        (
            'query Q($w: WhereInpObj) { Get { A(where: $w, nearVector: {vector: [[1, 2], [3, 4]], targetVectors: ["v"]}) { x } } }',
            'query Q($__searchd_vector_0: Vector!, $w: WhereInpObj) { Get { A(where: $w, nearVector: {vector: $__searchd_vector_0, targetVectors: ["v"]}) { x } } }',
            [[[1, 2], [3, 4]]],
        ),
        ("query { Get { A(nearVector: {vector: [1 2 3]}) { x } } }", "query ($__searchd_vector_0: Vector!) { Get { A(nearVector: {vector: $__searchd_vector_0}) { x } } }", [[1, 2, 3]]),
        (
            '{Get{A(hybrid:{query: "x \\" vector: [3]", vector: [1.0, 2.0]}){x}}} # vector: [9]',
            'query($__searchd_text_0: String!, $__searchd_vector_1: Vector!) {Get{A(hybrid:{query: $__searchd_text_0, vector: $__searchd_vector_1}){x}}} # vector: [9]',
            ['x " vector: [3]', [1.0, 2.0]],
        ),
        (
            '{ Get { A(bm25: {query: "vector: [1,2]"}) { x } } }',  # a search text, whatever it holds
            'query($__searchd_text_0: String!) { Get { A(bm25: {query: $__searchd_text_0}) { x } } }',
            ["vector: [1,2]"],
        ),
        (  # a brace inside a search text is not the document's
            '{ Get { A(bm25: {query: "a { b"}) { x } } }',
            'query($__searchd_text_0: String!) { Get { A(bm25: {query: $__searchd_text_0}) { x } } }',
            ["a { b"],
        ),
        (  # integers beyond 64 bits stay exact integers, as GraphQL reads them (orjson would make them floats)
            "{ Get { A(nearVector: {vector: [0.25, 123456789012345678901, -1e19, 0.00012345678901234567]}) { x } } }",
            "query($__searchd_vector_0: Vector!) { Get { A(nearVector: {vector: $__searchd_vector_0}) { x } } }",
            [[0.25, 123456789012345678901, -1e19, 0.00012345678901234567]],
        ),
    ],
)
def test_vector_and_query_literals_are_lifted(source: str, rewritten: str, values: list[object]) -> None:
    lifted = lift_literals(source)
    assert lifted is not None
    assert lifted[0] == rewritten and list(lifted[1].values()) == values


@pytest.mark.parametrize(
    "source",
    [
        '{ Get { A(nearText: {concepts: ["vector: [1,2]"]}) { x } } }',  # only inside a string
        '{ Get { A(bm25: {query: "caf\\u00e9"}) { x } } }',  # a unicode escape: left to the GraphQL parser
        "query A { Get { A(nearVector: {vector: [1]}) { x } } } query B { Get { A { x } } }",  # two operations
        '{ Get { A(nearVector: {vector: [1, "a"]}) { x } } }',  # not numbers: the parser reports it
        "{ Get { A(nearVector: {vector: [1, 2}) { x } } }",  # unbalanced
    ],
)
def test_unsafe_or_pointless_documents_are_left_alone(source: str) -> None:
    assert lift_literals(source) is None


def test_inline_and_variable_vectors_answer_alike(multimodal_client: TestClient) -> None:
    vector = example_objects(MULTIMODAL / "objects.jsonl")[5]["vectors"]["external"]
    fields = '{ title _additional { id distance } }'
    inline = graphql(multimodal_client, f'{{ Get {{ Artwork(nearVector: {{vector: {vector}, targetVectors: ["external"]}}, limit: 4) {fields} }} }}')
    variable = graphql(multimodal_client, f'query($v: Vector!) {{ Get {{ Artwork(nearVector: {{vector: $v, targetVectors: ["external"]}}, limit: 4) {fields} }} }}', {"v": vector})
    assert inline == variable and len(inline["data"]["Get"]["Artwork"]) == 4
    for declared in ("[Float]", "[Float!]!", "[Float]!"):  # as Weaviate's schema types a vector: what its clients declare
        weaviate_typed = f'query($v: {declared}) {{ Get {{ Artwork(nearVector: {{vector: $v, targetVectors: ["external"]}}, limit: 4) {fields} }} }}'
        assert graphql(multimodal_client, weaviate_typed, {"v": vector}) == inline, declared
    again = graphql(multimodal_client, f'{{ Get {{ Artwork(nearVector: {{vector: {vector}, targetVectors: ["external"]}}, limit: 4) {fields} }} }}')
    assert again == inline  # served from the cached document


def test_errors_point_into_the_text_the_client_sent(multimodal_client: TestClient) -> None:
    query = '{ Get { Artwork(nearVector: {vector: [1, 0, 0, 0], targetVectors: ["external"]}) { nope } } }'
    body = graphql(multimodal_client, query)
    error = body["errors"][0]
    assert "Cannot query field 'nope'" in error["message"]
    assert error["locations"] == [{"line": 1, "column": query.index("nope") + 1}]


def test_searches_that_differ_only_in_their_text_share_one_cached_document(multimodal_client: TestClient) -> None:
    services = multimodal_client.app.state.services  # type: ignore[attr-defined]
    cache = services.graphql.of(services.holder.current).documents
    texts = ["red circle", "blue", 'circle on \\"black\\"']
    answers = [graphql(multimodal_client, '{ Get { Artwork(bm25: {query: "' + text + '"}, limit: 3) { title } } }') for text in texts]
    shapes = [key for key in cache._documents if "bm25" in key]
    assert len(shapes) == 1 and "$__searchd_text_0" in shapes[0], shapes
    assert all("errors" not in a for a in answers) and answers[0] != answers[1]
    for text, answer in zip(['red circle', 'blue', 'circle on "black"'], answers):
        by_variable = graphql(multimodal_client, "query($q: String!) { Get { Artwork(bm25: {query: $q}, limit: 3) { title } } }", {"q": text})
        assert by_variable == answer, text
