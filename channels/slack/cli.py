"""``switchboard slack manifest NAME``: print the Slack app manifest of a slack channel.

Declared under the ``switchboard.commands`` entry points, like any channel's own subcommand.
"""

from __future__ import annotations

import argparse
import json

from gateway.errors import ConfigError


class SlackCommand:
    """:class:`gateway.plugins.CliCommand` for Slack helpers."""

    help = "Slack helpers (the app manifest)"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        from gateway.cli import add_config_arg

        actions = parser.add_subparsers(dest="slack_command", required=True, metavar="ACTION")
        manifest = actions.add_parser(
            "manifest", help="print the app manifest, with this gateway's URLs",
            description="Print the Slack app manifest (JSON) of a slack channel: paste it at "
            "api.slack.com/apps → Create New App → From a manifest.",
        )
        manifest.add_argument("name", help="the [channels.<name>] of a slack channel")
        add_config_arg(manifest)

    def run(self, args: argparse.Namespace) -> int:
        from channels.slack.channel import SlackChannel
        from channels.slack.manifest import manifest_for
        from gateway.config import load_settings

        settings = load_settings(args.config)
        raw = settings.channels.get(args.name)
        if raw is None or raw.get("type") != "slack":
            raise ConfigError(f"channels.{args.name}: no slack channel of that name in {args.config}")
        channel_settings = SlackChannel.validate(args.name, raw)
        print(json.dumps(manifest_for(args.name, channel_settings, settings.public_url), indent=2,
                         ensure_ascii=False))
        return 0


command = SlackCommand()
