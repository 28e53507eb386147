"""The Slack app manifest for a channel: ``manifest.json`` (shipped in this package) with its URLs.

``switchboard slack manifest NAME`` prints it; paste it into api.slack.com/apps → "Create New App
→ From a manifest". The request URLs, Socket Mode, the OAuth redirect URL and scopes of a
multi-workspace app, and the suggested prompts come from the channel's config.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any

from channels.slack.oauth_paths import redirect_path
from channels.slack.settings import SlackSettings


@cache
def _shipped() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(resources.files("channels.slack").joinpath("manifest.json").read_text("utf-8"))
    return data


def shipped_manifest() -> dict[str, Any]:
    """The manifest as shipped (example URLs)."""
    return copy.deepcopy(_shipped())


def manifest_for(name: str, settings: SlackSettings, public_url: str) -> dict[str, Any]:
    """The manifest of channel ``name``, ready to paste."""
    manifest = shipped_manifest()
    base = public_url.rstrip("/")
    events = manifest["settings"]["event_subscriptions"]
    interactivity = manifest["settings"]["interactivity"]
    if settings.mode == "socket":
        manifest["settings"]["socket_mode_enabled"] = True
        events.pop("request_url")
        interactivity.pop("request_url")
    else:
        events["request_url"] = interactivity["request_url"] = f"{base}/webhooks/{name}"
    manifest["features"]["assistant_view"]["suggested_prompts"] = [
        {"title": p.title, "message": p.message} for p in settings.assistant.prompts
    ]
    if settings.multi_workspace:
        manifest["oauth_config"]["scopes"]["bot"] = list(settings.scopes)
        manifest["oauth_config"]["redirect_urls"] = [base + redirect_path(name)]
    return manifest
