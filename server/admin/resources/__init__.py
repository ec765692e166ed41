"""The admin API's resources, one module each. :data:`ROUTES` lists every route as
(path under ``/admin/api/v1``, method, area whose scope it needs, resource); the OpenAPI
document (``server/admin/openapi.json``) describes exactly these (tests/flows/test_admin_openapi.py)."""

from __future__ import annotations

from ..calls import Resource
from . import audit, clients, invitations, keys, users

Route = tuple[str, str, str, Resource]

ROUTES: list[Route] = [*clients.ROUTES, *users.ROUTES, *invitations.ROUTES, *keys.ROUTES, *audit.ROUTES]
