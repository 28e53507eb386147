"""Plugin discovery through entry points: built-ins and third-party packages take the same path.

Only what the configuration names is imported. A configured plugin that is missing or broken
stops start-up with one clear line. ``SWITCHBOARD_PLUGINS_DISABLE`` (comma-separated
``group:name`` or distribution names) hides plugins, e.g. to rule one out while debugging.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from gateway.errors import ConfigError, PluginError

if TYPE_CHECKING:
    from gateway.channel import Channel
    from gateway.store import Store

CHANNELS = "switchboard.channels"
STORES = "switchboard.stores"
TOOLS = "switchboard.tools"
COMMANDS = "switchboard.commands"
GROUPS = (CHANNELS, STORES, TOOLS, COMMANDS)


class CliCommand(Protocol):
    """A ``switchboard <name>`` subcommand a plugin adds (entry point group ``switchboard.commands``).

    The entry point names the subcommand and resolves to an object with these three members.
    """

    #: one line for ``switchboard --help``
    help: str

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Add the subcommand's arguments (and sub-subcommands) to ``parser``."""
        ...

    def run(self, args: argparse.Namespace) -> int:
        """Carry the command out; raise ConfigError for a user mistake; return the exit code."""
        ...


@dataclass(frozen=True, slots=True)
class PluginInfo:
    group: str
    name: str
    target: str
    distribution: str | None


def _disabled() -> set[str]:
    raw = os.environ.get("SWITCHBOARD_PLUGINS_DISABLE", "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def discover(group: str) -> dict[str, EntryPoint]:
    """Installed entry points of ``group`` by name (first distribution wins on a clash)."""
    hidden = _disabled()
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        dist = ep.dist.name if ep.dist is not None else None
        short = group.rsplit(".", 1)[-1]
        if f"{short}:{ep.name}" in hidden or (dist and dist in hidden):
            continue
        found.setdefault(ep.name, ep)
    return found


def list_plugins() -> list[PluginInfo]:
    """Every plugin of every group, for ``switchboard plugins``."""
    out = []
    for group in GROUPS:
        for name, ep in sorted(discover(group).items()):
            dist = ep.dist.name if ep.dist is not None else None
            out.append(PluginInfo(group, name, ep.value, dist))
    return out


def _load(ep: EntryPoint, what: str) -> Any:
    try:
        return ep.load()
    except Exception as exc:  # any import-time failure of a plugin is reported the same way
        raise PluginError(f"{what}: plugin {ep.value!r} failed to load ({type(exc).__name__}: {exc})") from exc


def load_channel_class(type_name: str, where: str) -> type[Channel]:
    """The channel class for ``type = type_name``; ``where`` is the config key for errors."""
    from gateway.channel import Channel

    available = discover(CHANNELS)
    ep = available.get(type_name)
    if ep is None:
        known = ", ".join(sorted(available)) or "none installed"
        raise ConfigError(f"{where}: unknown channel type {type_name!r} (known: {known})")
    cls = _load(ep, where)
    if not (isinstance(cls, type) and issubclass(cls, Channel)):
        raise PluginError(f"{where}: plugin {ep.value!r} is not a switchboard Channel subclass")
    return cls


def load_store(url: str) -> Store:
    """A store object for ``url``, by its scheme (``memory``, ``sqlite``, ``redis``, ``rediss``, ...)."""
    scheme = urlsplit(url).scheme
    available = discover(STORES)
    ep = available.get(scheme)
    if ep is None:
        known = ", ".join(f"{s}://" for s in sorted(available)) or "none installed"
        raise ConfigError(f"gateway.store: unknown store scheme in {url.split('@')[-1]!r} (known: {known})")
    factory = _load(ep, "gateway.store")
    if not callable(factory):
        raise PluginError(f"gateway.store: plugin {ep.value!r} is not callable")
    store: Store = factory(url)
    return store


def load_command(name: str, ep: EntryPoint) -> CliCommand:
    """The subcommand object of a ``switchboard.commands`` entry point."""
    command = _load(ep, f"command {name}")
    if not (isinstance(getattr(command, "help", None), str) and callable(getattr(command, "configure", None))
            and callable(getattr(command, "run", None))):
        raise PluginError(f"command {name}: plugin {ep.value!r} has no help, configure() and run()")
    checked: CliCommand = command
    return checked


ToolHandler = Callable[[Any, Any], Any]


def load_tool(name: str) -> ToolHandler | None:
    """The entry-point handler for agent tool ``name``, or None when no plugin provides it."""
    ep = discover(TOOLS).get(name)
    if ep is None:
        return None
    handler = _load(ep, f"tools.{name}")
    if not callable(handler):
        raise PluginError(f"tools.{name}: plugin {ep.value!r} is not callable")
    return handler
