"""Schemathesis against the admin API's own OpenAPI document, served by a running gateway.

Every operation is fuzzed with valid (positive) and invalid (negative) inputs, with the token, and
each response is checked against the document: documented status codes and content types,
response schemas, no 5xx, invalid input refused with a 4xx, and the token enforced.
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

import aiohttp
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import positive_data_acceptance

from switchboard.testing import GatewayUnderTest, running_gateway

ADMIN = "0penapi-admin-token"
TOKEN = "echo-secret"
EXAMPLES = 25


def fuzz(document: dict[str, Any], base_url: str) -> list[str]:
    """Run every operation in both modes; the failures, as text (runs in a worker thread)."""
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 11
    for operation in operations:
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            try:
                run(operation, mode, base_url)
            except hypothesis.errors.Unsatisfiable:
                pass  # nothing in this operation can be made invalid (e.g. no parameters)
            except Exception:
                failures.append(f"{operation.label} [{mode.value}]\n{traceback.format_exc(limit=3)}")
    return failures


def run(operation: Any, mode: schemathesis.GenerationMode, base_url: str) -> None:
    # The messages cursor belongs to the agent API: a made-up one is rightly refused (400).
    excluded = [positive_data_acceptance] if operation.path.endswith("/messages") else []

    with requests.Session() as session:  # one connection pool, closed when done

        @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                             suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=base_url, session=session, excluded_checks=excluded,
                                   headers={"Authorization": f"Bearer {ADMIN}"})

        check()


async def seed(gw: GatewayUnderTest) -> None:
    """Some people and conversations, so that fuzzed ids sometimes hit real ones."""
    async with aiohttp.ClientSession() as http:
        for i, user in enumerate(["ann", "bob", "cy"]):
            await http.post(f"{gw.url}/webhooks/echo", json={"id": str(i), "user": user, "text": "hello"},
                            headers={"X-Echo-Token": TOKEN})
    await gw.idle()


@pytest.mark.slow
async def test_schemathesis_finds_nothing_wrong_with_the_admin_api(echo_plugin: Any) -> None:
    async with running_gateway({"echo": {"type": "echo", "token": TOKEN}}, gateway={"admin_token": ADMIN}) as gw:
        await seed(gw)
        async with aiohttp.ClientSession() as http, http.get(
            f"{gw.url}/admin/openapi.json", headers={"Authorization": f"Bearer {ADMIN}"}
        ) as resp:
            assert resp.status == 200
            document = await resp.json()
        failures = await asyncio.to_thread(fuzz, document, gw.url)
    assert not failures, "\n\n".join(failures)


def test_the_document_is_valid_openapi() -> None:
    from gateway.admin.openapi import document

    schema = schemathesis.openapi.from_dict(document())
    schema.validate()
    paths = document()["paths"]
    assert all(op.get("responses", {}).get("401") for ops in paths.values() for op in ops.values())
