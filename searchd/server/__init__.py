"""HTTP edge: thin starlette routes over the engine; errors mapped to statuses in one place."""

from searchd.server.app import Services, create_app, open_services

__all__ = ["Services", "create_app", "open_services"]
