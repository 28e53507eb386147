"""The ``switchboard`` command. User mistakes are one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.config import Settings, load_settings
from gateway.demo import free_port
from gateway.errors import ConfigError, PluginError, SwitchboardError

__all__ = ["free_port", "main"]

log = logging.getLogger("switchboard")
DEFAULT_CONFIG = "config/switchboard.toml"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _setup_logging(os.environ.get("SWITCHBOARD_LOG_LEVEL", "INFO"))
    try:
        return int(args.func(args) or 0)
    except (ConfigError, PluginError) as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        return 1
    except SwitchboardError as exc:
        print(f"switchboard: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the port is taken
        print(f"switchboard: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="switchboard", description="One Chatbase agent on every channel.")
    p.add_argument("--version", action="version", version=f"switchboard {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway", description="Run the gateway.")
    add_config_arg(serve)
    serve.add_argument("--workers", type=int, default=1,
                       help="processes serving the same port and store (default 1; more than 1 needs Redis)")
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set for each worker
    serve.set_defaults(func=cmd_serve)

    demo = sub.add_parser(
        "demo",
        help="run with embedded defaults (web chat + emulator)",
        description="Run with nothing to configure: SQLite store under ./.switchboard/, the web chat "
        "channel, and the built-in Chatbase emulator unless CHATBASE_API_KEY and CHATBASE_AGENT_ID are set.",
    )
    demo.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080)")
    demo.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    demo.add_argument("--enforce-rate-limit", action="store_true",
                      help="the emulator refuses over 100 requests per 10 s with 429, as Chatbase does")
    demo.set_defaults(func=cmd_demo)

    check = sub.add_parser("check", help="validate the config and print webhook URLs",
                           description="Validate the config; print each channel's webhook URL(s).")
    add_config_arg(check)
    check.set_defaults(func=cmd_check)

    plugins = sub.add_parser("plugins", help="list channel types, stores and tools",
                             description="List the plugins found through entry points.")
    plugins.set_defaults(func=cmd_plugins)

    emu = sub.add_parser("emulator", help="run the Chatbase API v2 emulator alone",
                         description="Run the Chatbase API v2 emulator (base path /api/v2).")
    emu.add_argument("--host", default="127.0.0.1")
    emu.add_argument("--port", type=int, default=8090)
    emu.add_argument("--enforce-rate-limit", action="store_true",
                     help="refuse over 100 requests per 10 s per key with 429 and Retry-After, as Chatbase does")
    emu.set_defaults(func=cmd_emulator)

    _plugin_commands(sub)
    return p


def _plugin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Subcommands from ``switchboard.commands`` entry points; a broken one is one line, not a dead CLI."""
    from gateway.plugins import COMMANDS, discover, load_command

    for name, ep in sorted(discover(COMMANDS).items()):
        if name in sub.choices:
            continue  # a plugin cannot replace a core command
        try:
            command = load_command(name, ep)
        except PluginError as exc:
            print(f"switchboard: {exc}", file=sys.stderr)
            continue
        parser = sub.add_parser(name, help=command.help, description=command.help)
        command.configure(parser)
        parser.set_defaults(func=command.run)


def add_config_arg(p: argparse.ArgumentParser) -> None:
    """``--config FILE`` as every subcommand that reads the config takes it (for plugin commands too)."""
    p.add_argument(
        "--config",
        default=os.environ.get("SWITCHBOARD_CONFIG", DEFAULT_CONFIG),
        help=f"TOML config file (default: $SWITCHBOARD_CONFIG, else {DEFAULT_CONFIG})",
    )


def _setup_logging(level: str) -> None:
    """Logging until the config is read (then :func:`_run` applies ``[logging]`` and the secrets)."""
    from gateway.config import LoggingSettings
    from gateway.logs import configure_logging

    configure_logging(LoggingSettings(), env={**os.environ, "SWITCHBOARD_LOG_LEVEL": level})


def _run(settings: Settings, *, banner: str | None = None, reuse_port: bool = False) -> int:
    from aiohttp import web

    from gateway.app import build_app
    from gateway.logs import configure_logging, secrets_of

    configure_logging(settings.logging, secrets_of(settings))
    app = build_app(settings)
    app.on_startup.append(_freeze_heap)  # last: once every resource is open
    host, port = settings.gateway.host, settings.gateway.port

    def announce(_: str) -> None:
        # run_app calls this once the socket is bound, so "listening" is true when it is printed.
        print(banner or f"Switchboard listening on http://{host}:{port}", flush=True)

    _faster_loop()
    web.run_app(app, host=host, port=port, print=announce, shutdown_timeout=settings.gateway.shutdown_grace,
                reuse_port=reuse_port or None)
    return 0


async def _freeze_heap(_: object) -> None:
    """Keep what start-up built out of the garbage collector's full collections.

    Modules, settings, clients: everything alive once the gateway is up stays alive. Left in the
    oldest generation, each full collection walks all of it again: one or two landed in every run
    of benchmark scenario 1's waves, holding the event loop for 65 to 97 ms of CPU each (up to
    500 ms on the loaded machine), delaying every webhook queued behind them. Frozen, a full
    collection walks only what requests and turns created since: 8 to 15 ms.
    """
    gc.collect()
    gc.freeze()


def _faster_loop() -> None:
    """uvloop when installed (``pip install 'switchboard[fast]'``) and not turned off with
    ``SWITCHBOARD_UVLOOP=0``: see docs/benchmarks.md for what it gains."""
    if os.environ.get("SWITCHBOARD_UVLOOP", "1") == "0":
        return
    try:
        import uvloop  # type: ignore[import-not-found, unused-ignore]  # optional: the "fast" extra
    except ImportError:
        return
    import asyncio

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.workers import check_workers, run_workers

    settings = load_settings(args.config)
    check_workers(settings, args.workers)
    if args.workers > 1:
        host, port = settings.gateway.host, settings.gateway.port
        print(f"Switchboard starting {args.workers} workers on http://{host}:{port}", flush=True)
        return run_workers(args.config, args.workers)
    # _run builds the app (where plugin and channel mistakes surface) before binding the port.
    return _run(settings, reuse_port=args.reuse_port)


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.demo import run_demo

    run_demo(args.host, args.port, enforce_rate_limit=args.enforce_rate_limit)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate everything that can be validated offline; one line per problem."""
    from gateway.agents import channel_agents
    from gateway.app import desk_of
    from gateway.channel import Channel
    from gateway.logs import configure_logging, secrets_of
    from gateway.plugins import load_channel_class, load_store
    from gateway.services import OfflineServices

    settings = load_settings(args.config)
    # Redaction first: building channels may log, and nothing check prints may carry a secret.
    configure_logging(settings.logging, secrets_of(settings))
    problems: list[str] = []
    try:
        load_store(settings.gateway.store)
    except (ConfigError, PluginError) as exc:
        problems.append(str(exc))
    services = OfflineServices(settings)
    channels: dict[str, Channel] = {}
    lines = [f"config {args.config}: public_url {settings.public_url}, store {_mask(settings.gateway.store)}"]
    agents = settings.all_agents
    by_channel = channel_agents(settings)
    for name, raw in settings.channels.items():
        try:
            cls = load_channel_class(str(raw["type"]), f"channels.{name}.type")
            channel = channels[name] = cls.from_config(name, raw, services)
        except (ConfigError, PluginError) as exc:
            problems.append(str(exc))
            continue
        lines.append(f"channel {name} ({cls.type}): {channel.describe()}")
        lines.append(f"  agent: {by_channel[name]} (agent_id {agents[by_channel[name]].agent_id or '?'})")
        for label, url in channel.webhook_urls(settings.public_url):
            lines.append(f"  {label}: {url}")
    try:
        desk_of(settings, channels)
    except ConfigError as exc:
        problems.append(str(exc))
    used = set(by_channel.values()) | ({"default"} if not settings.agents or not by_channel else set())
    for agent_name in sorted(used):
        agent = agents[agent_name]
        if not agent.api_key or not agent.agent_id:
            section = "agent" if agent_name == "default" else f"agents.{agent_name}"
            problems.append(f"{section}: api_key and agent_id are required")
    for line in lines:
        print(line)
    for problem in problems:
        print(f"switchboard: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _mask(url: str) -> str:
    """A store URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user + ':***' if ':' in creds else user}@{host}"
    return url


def cmd_plugins(args: argparse.Namespace) -> int:
    from gateway.plugins import list_plugins

    titles = {"switchboard.channels": "channel types", "switchboard.stores": "store schemes",
              "switchboard.tools": "tools", "switchboard.commands": "commands"}
    current = None
    for info in list_plugins():
        if info.group != current:
            current = info.group
            print(f"{titles[info.group]}:")
        print(f"  {info.name:<18} {info.target}  [{info.distribution or '?'}]")
    return 0


def cmd_emulator(args: argparse.Namespace) -> int:
    from adapters.emulator import run_emulator

    run_emulator(args.host, args.port, rate_limit=args.enforce_rate_limit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
