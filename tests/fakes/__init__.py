"""Local fake embedding providers (Jina AI, NVIDIA NIM, Weaviate Embeddings) for hermetic tests and benchmarks.

Usage: ``jina = FakeJina()``, then ``with serving(jina.app) as base_url:`` point the client at ``base_url``
and inspect ``jina.requests`` afterwards. ``tests.fakes.embeddings`` computes the vectors to expect.
"""

from tests.fakes.base import FakeProvider, RecordedRequest
from tests.fakes.jina import FakeJina
from tests.fakes.nvidia import FakeNvidia
from tests.fakes.serve import serving
from tests.fakes.weaviate_embed import FakeWeaviateEmbed

__all__ = ["FakeJina", "FakeNvidia", "FakeProvider", "FakeWeaviateEmbed", "RecordedRequest", "serving"]
