"""searchd: declarative multimodal vector and hybrid search with the schema in git."""

__version__ = "0.1.0"

# The Weaviate REST/GraphQL level whose shapes this server follows; clients gate features on it.
WEAVIATE_API_VERSION = "1.30.0"

__all__ = ["WEAVIATE_API_VERSION", "__version__"]
