"""``switchboard teams manifest NAME [--out app.zip]``: the Teams app package of a teams channel.

Declared under the ``switchboard.commands`` entry points, the way a third-party channel adds one.
Without ``--out`` it prints ``manifest.json``; with it, it writes the zip to upload to Teams.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gateway.errors import ConfigError


class TeamsCommand:
    """:class:`gateway.plugins.CliCommand` for Teams helpers."""

    help = "Microsoft Teams helpers"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        from gateway.cli import add_config_arg

        actions = parser.add_subparsers(dest="teams_command", required=True, metavar="ACTION")
        show = actions.add_parser(
            "manifest", help="print the Teams app manifest, or write the app package (zip)",
            description="Build the Teams app package (manifest.json + icons) of a teams channel.",
        )
        show.add_argument("name", help="the [channels.<name>] of a teams channel")
        show.add_argument("--out", type=Path, help="write the zip to upload to Teams here")
        show.add_argument("--app-name", default="Switchboard", help="the name people see in Teams")
        add_config_arg(show)

    def run(self, args: argparse.Namespace) -> int:
        from channels.teams.channel import TeamsChannel
        from channels.teams.manifest import manifest, package
        from gateway.config import load_settings

        settings = load_settings(args.config)
        raw = settings.channels.get(args.name)
        if raw is None or raw.get("type") != "teams":
            raise ConfigError(f"channels.{args.name}: no teams channel of that name in {args.config}")
        teams = TeamsChannel.validate(args.name, raw)
        if args.out is None:
            print(json.dumps(manifest(teams, name=args.app_name, public_url=settings.public_url), indent=2))
            return 0
        args.out.write_bytes(package(teams, name=args.app_name, public_url=settings.public_url))
        print(f"Teams app package written: {args.out} (upload it in Teams: Apps > Manage your apps > Upload an app)")
        return 0


command = TeamsCommand()
