from starlette.testclient import TestClient

from tests.conftest import graphql


def test_multimodal_example_answers_near_text(multimodal_client: TestClient) -> None:
    body = graphql(multimodal_client, '{ Get { Artwork(nearText: {concepts: ["red circle"]}, limit: 2) { title } } }')
    assert {r["title"] for r in body["data"]["Get"]["Artwork"]} == {"Red circle on black", "Red circle on white"}
