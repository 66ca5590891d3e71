"""gRPC edge: Weaviate's ``weaviate.v1`` protocol beside the HTTP server, over the same engine, catalog and auth."""
