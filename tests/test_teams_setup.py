"""Teams setup: config mistakes are one line, the app package is what Teams accepts, keys are cached,
and certificate credentials work like a secret."""

from __future__ import annotations

import datetime
import io
import json
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from channels.teams import TeamsChannel
from channels.teams.markup import teams_escape, to_teams
from gateway.errors import ConfigError
from switchboard.testing import running_gateway
from switchboard.testing.teams import APP_ID, PERSONAL, TENANT, FakeTeams

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("raw", "problem"), [
    ({"app_id": "not-a-guid", "app_password": "x"}, "channels.t.app_id: Value error, expected the Microsoft App ID"),
    ({"app_id": APP_ID}, "set one of app_password (a client secret) or certificate_path"),
    ({"app_id": APP_ID, "app_password": "x", "certificate_path": "/c.pem"}, "set one of app_password"),
    ({"app_id": APP_ID, "app_password": "x", "tenant_id": "contoso"}, "channels.t.tenant_id: Value error"),
    ({"app_id": APP_ID, "app_password": "x", "feedback": "stars"}, "channels.t.feedback"),
])
def test_config_mistakes_are_one_line(raw: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TeamsChannel.validate("t", {"type": "teams", **raw})
    assert problem in str(caught.value) and "\n" not in str(caught.value)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_cli_prints_the_manifest_and_writes_the_app_package(tmp_path: Path) -> None:
    cfg = tmp_path / "switchboard.toml"
    cfg.write_text(
        '[gateway]\npublic_url = "https://bot.example.com"\n[agent]\napi_key = "k"\nagent_id = "a"\n'
        f'[channels.helpdesk]\ntype = "teams"\napp_id = "{APP_ID}"\napp_password = "s3cret"\ntenant_id = "{TENANT}"\n'
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gateway", "teams", "manifest", *args, "--config", str(cfg)],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)

    printed = run("helpdesk")
    assert printed.returncode == 0, printed.stderr
    manifest = json.loads(printed.stdout)
    assert manifest["id"] == APP_ID and manifest["bots"][0]["botId"] == APP_ID
    assert set(manifest["bots"][0]["scopes"]) == {"personal", "groupChat", "team"}
    assert {"name": "ChannelMessage.Read.Group", "type": "Application"} in \
        manifest["authorization"]["permissions"]["resourceSpecific"]
    assert manifest["developer"]["privacyUrl"].startswith("https://") and "s3cret" not in printed.stdout

    out = tmp_path / "app.zip"
    written = run("helpdesk", "--out", str(out), "--app-name", "IT Helpdesk")
    assert written.returncode == 0, written.stderr
    with zipfile.ZipFile(io.BytesIO(out.read_bytes())) as package:
        assert sorted(package.namelist()) == ["color.png", "manifest.json", "outline.png"]
        assert json.loads(package.read("manifest.json"))["name"]["short"] == "IT Helpdesk"
        assert _png_size(package.read("color.png")) == (192, 192)
        assert _png_size(package.read("outline.png")) == (32, 32)

    wrong = run("nothing-here")
    assert wrong.returncode == 1 and wrong.stderr.strip().startswith("switchboard: channels.nothing-here:")


def test_teams_markdown() -> None:
    assert to_teams("# Title\nSee ![logo](https://x.example/l.png) and a < b\n> quoted") == \
        "**Title**\nSee [logo](https://x.example/l.png) and a &lt; b\n> quoted"
    assert to_teams("```\n# not a heading <b>\n```") == "```\n# not a heading <b>\n```"
    assert teams_escape("*hi* [x](y)\n# no") == "\\*hi\\* \\[x\\](y)\n\\# no"


async def test_signing_keys_are_fetched_once_for_many_requests() -> None:
    async with FakeTeams() as teams:
        async with running_gateway({"teams": teams.channel_config(streaming=False)}) as gw:
            for n in range(5):
                await teams.send(f"{gw.url}/webhooks/teams", teams.message(f"m{n}"))
            await gw.idle()
            # A forged key id re-reads the metadata at most once per refresh floor, not per request.
            for _ in range(5):
                forged = teams.token(rogue=True, kid="k2")
                await teams.send(f"{gw.url}/webhooks/teams", teams.message("x"), token=forged)
        assert len(teams.texts(PERSONAL)) == 5
        assert teams.metadata_reads == 1
        assert teams.tokens_issued == 1  # and one app token serves every answer


def _certificate(tmp_path: Path) -> tuple[Path, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "switchboard-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM)
    path = tmp_path / "bot.pem"
    path.write_bytes(pem)
    return path, cert


async def test_a_certificate_credential_gets_tokens_like_a_secret(tmp_path: Path) -> None:
    path, cert = _certificate(tmp_path)
    async with FakeTeams() as teams:
        teams.trust_certificate(cert)
        config = teams.channel_config(streaming=False, tenant_id=TENANT, certificate_path=str(path))
        del config["app_password"]
        async with running_gateway({"teams": config}) as gw:
            await teams.send(f"{gw.url}/webhooks/teams", teams.message("hello"))
            await gw.idle()
        assert teams.texts(PERSONAL) == ['You said: "hello". This is message 1 of this conversation.']


@pytest.mark.parametrize(("issuer", "accepted"), [
    (f"https://login.microsoftonline.com/{TENANT}/v2.0", True),
    (f"https://sts.windows.net/{TENANT}/", True),
    ("https://login.microsoftonline.com/99999999-9999-9999-9999-999999999999/v2.0", False),
])
async def test_a_single_tenant_app_accepts_entra_tokens_of_its_own_tenant_only(issuer: str, accepted: bool) -> None:
    async with FakeTeams() as teams:
        async with running_gateway({"teams": teams.channel_config(streaming=False, tenant_id=TENANT)}) as gw:
            status, _ = await teams.send(f"{gw.url}/webhooks/teams", teams.message("hi"),
                                         token=teams.token(iss=issuer, serviceurl=None, tid=TENANT))
            await gw.idle()
        assert (status == 200) is accepted and len(teams.texts(PERSONAL)) == int(accepted)


@pytest.mark.parametrize("oddity", [
    {"channelData": {"tenant": "not-an-object"}},
    {"channelId": ["msteams"]},
    {"serviceUrl": ["http://127.0.0.1/"]},
    {"entities": [{"type": "mention", "mentioned": {"id": "28:11111111-2222-3333-4444-555555555555"}}]},
    {"entities": [{"type": "mention", "mentioned": "someone"}]},
    {"conversation": {"id": "a:1", "conversationType": "meeting"}},
    {"conversation": None},
    {"from": None},
    {"type": "invoke", "name": "adaptiveCard/action", "value": {"action": ["not", "a", "dict"]}},
    {"type": "invoke", "name": "message/submitAction", "value": {"actionName": "feedback", "actionValue": 7}},
    {"type": "conversationUpdate", "membersAdded": [{"name": "no id"}]},
])
async def test_a_signed_but_odd_activity_is_a_4xx_or_ignored_never_a_500(oddity: dict[str, object]) -> None:
    async with FakeTeams() as teams:
        async with running_gateway({"teams": teams.channel_config(streaming=False)}) as gw:
            activity = {**teams.message("hi", mention=True), **oddity}
            status, _ = await teams.send(f"{gw.url}/webhooks/teams", activity)
            await gw.idle()
            assert status == 200 or 400 <= status < 500, status
            # and the channel still answers the next, ordinary message
            assert (await teams.send(f"{gw.url}/webhooks/teams", teams.message("still there?")))[0] == 200
            await gw.idle()
        assert teams.texts(PERSONAL)[-1].startswith('You said: "still there?"')
