"""GraphQL queries: the schema is built from the catalog; resolvers plan and run searches."""
