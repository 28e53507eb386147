"""The operator API under ``/admin``: registered only when ``gateway.admin_token`` is set."""

from __future__ import annotations

from gateway.admin.api import ADMIN, AdminApi
from gateway.admin.api import routes as admin_routes

__all__ = ["ADMIN", "AdminApi", "admin_routes"]
