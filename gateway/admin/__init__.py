"""The operator API under ``/admin``: registered only when ``gateway.admin_token`` is set."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.commands import Controls


def admin_routes(token: str, resources: Any, controls: Controls) -> list[web.RouteDef]:
    """The routes of the admin API, guarded by ``token``."""
    from gateway.admin.api import AdminApi

    return AdminApi(token, resources, controls).routes()
