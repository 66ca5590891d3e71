"""The offline vectorizers: deterministic, lexical/perceptual, weighted by field name."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image, ImageDraw
from starlette.testclient import TestClient

from searchd.errors import InvalidInput
from searchd.modules.features import IMAGE_FEATURES, image_features, text_features
from tests.conftest import QUICKSTART, ClientFactory


def picture(color: tuple[int, int, int], size: int = 48, shape: str = "circle") -> bytes:
    image = Image.new("RGB", (size, size), (250, 250, 250))
    pen = ImageDraw.Draw(image)
    box = (size // 6, size // 6, size - size // 6, size - size // 6)
    (pen.ellipse if shape == "circle" else pen.rectangle)(box, fill=color)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_text_features_are_deterministic_unit_and_lexical() -> None:
    a = text_features("Sourdough bread baking", 256)
    assert a.shape == (256,) and a.dtype == np.float32
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-6)
    assert np.array_equal(a, text_features("Sourdough bread baking", 256))
    near = cosine(a, text_features("baking sourdough loaves", 256))
    far = cosine(a, text_features("PostgreSQL planner statistics", 256))
    assert near > 0.3 > far
    assert not text_features("", 64).any()


def test_image_features_are_perceptual() -> None:
    red = image_features(picture((220, 30, 40)))
    assert red.shape == (IMAGE_FEATURES,)
    assert cosine(red, image_features(picture((220, 30, 40), size=120))) > 0.95  # same picture, other size
    assert cosine(red, image_features(picture((220, 30, 40), shape="square"))) > cosine(red, image_features(picture((30, 60, 220))))
    with pytest.raises(InvalidInput, match="not a decodable image"):
        image_features(b"GIF89a but not really")


def test_object_vector_is_the_weighted_mean_by_field_name(client_factory: ClientFactory) -> None:
    client: TestClient = client_factory(QUICKSTART)
    properties = {"title": "Sourdough at home", "body": "Feed the starter and fold the dough."}
    created = client.post("/v1/objects", json={"class": "Article", "properties": properties}).json()
    # quickstart.yaml: weights {title: 2, body: 1}, 256 dimensions, cosine.
    expected = 2 * text_features(properties["title"], 256) + 1 * text_features(properties["body"], 256)
    expected /= np.linalg.norm(expected)
    assert np.allclose(created["vector"], expected, atol=1e-6)
    # A missing field does not count: the vector is then the title's alone.
    only_title = client.post("/v1/objects", json={"class": "Article", "properties": {"title": properties["title"]}}).json()
    assert np.allclose(only_title["vector"], text_features(properties["title"], 256), atol=1e-6)
    # Nothing to embed: stored without that vector, and never returned by vector search.
    empty = client.post("/v1/objects", json={"class": "Article", "properties": {"wordCount": 3}}).json()
    assert empty["vectors"] == {}


def test_multimodal_blocks_and_weights(multimodal_client: TestClient) -> None:
    data = picture((30, 170, 60), shape="square")
    properties = {"title": "Green thing", "image": base64.b64encode(data).decode()}
    created = multimodal_client.post("/v1/objects", json={"class": "Artwork", "properties": properties}).json()
    vector = np.asarray(created["vectors"]["multimodal"])
    text_block = 512 - IMAGE_FEATURES
    # multimodal.yaml weights: title 0.2, description 0.2 (absent here), image 0.6.
    expected = np.concatenate([0.2 * text_features("Green thing", text_block), 0.6 * image_features(data)]) / 0.8
    expected /= np.linalg.norm(expected)
    assert np.allclose(vector, expected, atol=1e-6)
