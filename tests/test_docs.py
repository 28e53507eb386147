"""Conventions a newcomer relies on: every plugin resolves, every channel and key is documented once.

The README is the front door: the quick start, a table of channels linking to one setup page
each, the configuration essentials and links to the rest. Each topic lives on one page under
``docs/``; these tests keep it that way as channels and keys are added.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import pydantic
import pytest

from gateway.channel import Channel, ChannelSettings
from gateway.config import (
    AgentSettings,
    CommandSettings,
    GatewaySettings,
    HandoffSettings,
    LinkingSettings,
    LoggingSettings,
    Settings,
    ToolSettings,
    interpolate,
)
from gateway.plugins import load_channel_class

ROOT = Path(__file__).resolve().parent.parent
README_PATH = ROOT / "README.md"
README = README_PATH.read_text()
DOC_PAGES = sorted((ROOT / "docs").rglob("*.md"))
CHANNEL_EPS = sorted(entry_points(group="switchboard.channels"), key=lambda ep: ep.name)
#: the README's channel table: | channel | `type` | how messages arrive | [setup](docs/setup/x.md) |
CHANNEL_ROW = re.compile(r"^\|[^|\n]+\| `(?P<type>[^`]+)` \|[^\n]*\]\((?P<page>docs/setup/[^)#]+\.md)\) \|$", re.M)
#: the README's table of the other config sections: | `[section]` | what | [page](docs/x.md) |
SECTION_ROW = re.compile(r"^\| `\[(?P<section>[a-z]+)[.\]][^`]*` \|[^\n]*\]\((?P<page>[^)]+)\) \|$", re.M)
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)\)")
FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.M | re.S)


def channel_rows() -> dict[str, str]:
    return {m["type"]: m["page"] for m in CHANNEL_ROW.finditer(README)}


def documented(key: str, text: str) -> bool:
    """``key`` is shown as code (`key`) or set in an example (``key = ...``)."""
    return f"`{key}`" in text or re.search(rf"^\s*#?\s*{re.escape(key)}\s*=", text, re.M) is not None


# -- channels -------------------------------------------------------------------------------------
@pytest.mark.parametrize("ep", CHANNEL_EPS, ids=lambda ep: ep.name)
def test_channel_entry_point_is_a_channel_of_that_type(ep: EntryPoint) -> None:
    cls = ep.load()
    assert isinstance(cls, type) and issubclass(cls, Channel)
    assert cls.type == ep.name
    assert issubclass(cls.Settings, ChannelSettings)


@pytest.mark.parametrize("ep", CHANNEL_EPS, ids=lambda ep: ep.name)
def test_channel_type_has_a_readme_row_and_a_setup_page_with_its_config_and_keys(ep: EntryPoint) -> None:
    name = ep.name
    page_path = channel_rows().get(name)
    assert page_path, f"README's channel table has no row for `{name}` linking to docs/setup/<page>.md"
    page = (ROOT / page_path).read_text()
    assert re.search(rf'^type = "{re.escape(name)}"', page, re.M), f"{page_path} shows no config for {name}"
    cls = ep.load()
    # The base keys (type, agent) are every channel's, documented once in the README.
    keys = [f.alias or k for k, f in cls.Settings.model_fields.items() if k not in ChannelSettings.model_fields]
    undocumented = [k for k in keys if not documented(k, page)]
    assert not undocumented, f"{name}: keys missing from {page_path}: {undocumented}"


def test_channel_setup_lives_only_on_its_setup_page() -> None:
    """No paragraph of a setup page is repeated in the README or on another page."""
    home: dict[str, Path] = {}
    for path in [README_PATH, *DOC_PAGES]:
        for paragraph in prose_paragraphs(path.read_text()):
            first = home.setdefault(paragraph, path)
            assert first == path, f"{path.relative_to(ROOT)} repeats {first.relative_to(ROOT)}: {paragraph[:80]}..."


def prose_paragraphs(text: str) -> Iterator[str]:
    """Paragraphs of running text (no code, tables or headings), whitespace-normalised."""
    text = FENCE.sub("", text)
    for block in re.split(r"\n\s*\n", text):
        flat = " ".join(block.split())
        if len(flat) > 120 and not flat.startswith(("|", "#", "<")):
            yield flat


# -- configuration --------------------------------------------------------------------------------
def test_every_gateway_and_agent_key_is_in_the_readme() -> None:
    for prefix, model in (("gateway", GatewaySettings), ("agent", AgentSettings)):
        missing = [k for k in model.model_fields if f"{prefix}.{k}" not in README]
        assert not missing, f"README lacks {prefix} keys {missing}"


OPTIONAL_SECTIONS: dict[str, type[pydantic.BaseModel]] = {
    "agents": AgentSettings,
    "tools": ToolSettings,
    "commands": CommandSettings,
    "linking": LinkingSettings,
    "handoff": HandoffSettings,
    "logging": LoggingSettings,
}


def test_every_config_section_is_in_the_readme() -> None:
    sections = {m["section"] for m in SECTION_ROW.finditer(README)} | {"gateway", "agent"}
    missing = [s for s in Settings.model_fields if s not in sections]
    assert not missing, f"README's configuration tables name no page for the sections {missing}"


@pytest.mark.parametrize("section", sorted(OPTIONAL_SECTIONS))
def test_every_key_of_a_section_is_on_the_page_the_readme_links_for_it(section: str) -> None:
    pages = {m["section"]: m["page"] for m in SECTION_ROW.finditer(README)}
    assert section in pages, f"README's section table has no row for [{section}]"
    page = (ROOT / pages[section]).read_text()
    missing = [k for k in OPTIONAL_SECTIONS[section].model_fields if not documented(k, page)]
    assert not missing, f"[{section}] keys missing from {pages[section]}: {missing}"


class _AnyEnv(Mapping[str, str]):
    """Every ``${NAME}`` of a documentation example resolves, to a value shaped like a secret."""

    def __getitem__(self, name: str) -> str:
        if "SID" in name:
            return "AC" + "0" * 32  # Twilio account SIDs are checked for their shape
        if name.endswith(("APP_ID", "TENANT_ID")):
            return "00000000-0000-0000-0000-000000000000"  # Microsoft app and tenant ids are GUIDs
        return "123456789:docs-example" if "BOT_TOKEN" in name else "docs_example_value"

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def toml_examples() -> Iterator[Any]:
    for path in [README_PATH, *DOC_PAGES]:
        blocks = [m["body"] for m in FENCE.finditer(path.read_text()) if m["lang"] == "toml"]
        for number, body in enumerate(blocks, 1):
            yield pytest.param(body, id=f"{path.relative_to(ROOT)}#{number}")


@pytest.mark.parametrize("body", list(toml_examples()))
def test_every_toml_example_is_valid_configuration(body: str) -> None:
    """A reader copies these into their config: each must parse and pass validation as shown."""
    data: dict[str, Any] = interpolate(tomllib.loads(body), "", _AnyEnv())
    Settings.model_validate({k: v for k, v in data.items() if k != "channels"})
    for name, section in data.get("channels", {}).items():
        load_channel_class(section["type"], f"channels.{name}.type").validate(name, section)


# -- pages and links ------------------------------------------------------------------------------
def test_readme_is_a_front_door_with_the_two_quick_start_commands() -> None:
    assert len(README.splitlines()) <= 250, "the README is the front door; put details on a docs/ page"
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = FENCE.search(quick_start)
    assert block is not None, "the quick start shows no commands"
    commands = [line.split("#")[0].strip() for line in block["body"].splitlines()]
    assert commands == ["pip install -e . && switchboard demo", "bash scripts/test"]
    assert "bash scripts/test" in (ROOT / ".ci/run").read_text(), "CI must run the README's test command"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / m["target"].split("#")[0]).resolve() for m in LINK.finditer(README)}
    orphans = [str(p.relative_to(ROOT)) for p in DOC_PAGES if p.resolve() not in linked]
    assert not orphans, f"pages a reader of the README cannot find: {orphans}"


def github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def anchors(text: str) -> set[str]:
    text = FENCE.sub("", text)
    return {github_anchor(m[1]) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("path", [README_PATH, *DOC_PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(path: Path) -> None:
    broken = []
    for m in LINK.finditer(FENCE.sub("", path.read_text())):
        target = m["target"]
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text())):
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)}: broken links {broken}"


# -- plugins --------------------------------------------------------------------------------------
@pytest.mark.parametrize("group", ["switchboard.stores", "switchboard.tools"])
def test_every_store_and_tool_entry_point_loads(group: str) -> None:
    for ep in entry_points(group=group):
        assert callable(ep.load()), ep.name


def test_every_command_entry_point_is_a_documented_subcommand() -> None:
    from gateway.plugins import load_command

    for ep in entry_points(group="switchboard.commands"):
        command = load_command(ep.name, ep)
        assert command.help, ep.name
        assert f"switchboard {ep.name} " in README, f"README's command table lacks `switchboard {ep.name}`"
