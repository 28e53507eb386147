"""``switchboard telegram set-webhook NAME``: the Telegram channel's own CLI subcommand.

Declared under the ``switchboard.commands`` entry points, the way a third-party channel adds one.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping
from typing import Any

from gateway.config import Settings
from gateway.errors import ConfigError


class TelegramCommand:
    """:class:`gateway.plugins.CliCommand` for Telegram helpers."""

    help = "Telegram helpers"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        from gateway.cli import add_config_arg

        actions = parser.add_subparsers(dest="tg_command", required=True, metavar="ACTION")
        set_webhook = actions.add_parser(
            "set-webhook", help="register the webhook URL and secret with Telegram",
            description="Call setWebhook for a telegram channel, with its secret token.",
        )
        set_webhook.add_argument("name", help="the [channels.<name>] of a telegram channel")
        add_config_arg(set_webhook)

    def run(self, args: argparse.Namespace) -> int:
        from gateway.config import load_settings

        settings = load_settings(args.config)
        raw = settings.channels.get(args.name)
        if raw is None or raw.get("type") != "telegram":
            raise ConfigError(f"channels.{args.name}: no telegram channel of that name in {args.config}")
        url = asyncio.run(_set_webhook(args.name, raw, settings))
        print(f"webhook set: {url}")
        return 0


async def _set_webhook(name: str, raw: Mapping[str, Any], settings: Settings) -> str:
    from channels.telegram.channel import TelegramChannel
    from gateway.services import OfflineServices

    channel = TelegramChannel.from_config(name, raw, OfflineServices(settings))
    async with channel:
        return await channel.set_webhook(settings.public_url)


command = TelegramCommand()
