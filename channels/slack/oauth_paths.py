"""Where a multi-workspace Slack channel serves its install page and OAuth redirect."""

from __future__ import annotations


def install_path(name: str) -> str:
    return f"/webhooks/{name}/install"


def redirect_path(name: str) -> str:
    return f"/webhooks/{name}/oauth_redirect"
