"""Client-side tools: the agent's custom actions run by the gateway.

A tool is an entry point under ``switchboard.tools`` (an async ``(arguments, context)`` handler)
or a ``[tools.<name>] url`` that receives a JSON POST. Whatever happens, the agent gets an output:
failures become a structured ``{"error": {...}}`` so a conversation never hangs on a tool.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.agent import ToolCall
from gateway.config import ToolSettings
from gateway.errors import PluginError
from gateway.metrics import Metrics
from gateway.plugins import ToolHandler, load_tool

log = logging.getLogger(__name__)

ENTRY_POINT_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool handler learns about the call besides its arguments."""

    tool_name: str
    tool_call_id: str
    conversation_id: str | None
    user_id: str
    channel: str


def tool_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class ToolRunner:
    """Resolves and runs tools; URL tools win over entry points of the same name."""

    def __init__(self, settings: dict[str, ToolSettings], http: aiohttp.ClientSession, metrics: Metrics) -> None:
        self._settings = settings
        self._http = http
        self._metrics = metrics
        self._handlers: dict[str, ToolHandler | None] = {}

    def _handler(self, name: str) -> ToolHandler | None:
        if name not in self._handlers:
            self._handlers[name] = load_tool(name)
        return self._handlers[name]

    async def run(self, call: ToolCall, context: ToolContext) -> Any:
        """The output to submit for ``call``; never raises for a tool's own failure."""
        outcome = "ok"
        try:
            if call.tool_name in self._settings:
                output = await self._run_url(self._settings[call.tool_name], call, context)
            else:
                try:
                    handler = self._handler(call.tool_name)
                except PluginError as exc:
                    log.error("%s", exc)
                    handler = None
                if handler is None:
                    outcome = "unknown"
                    log.warning("agent called unknown tool %r; answering with an error", call.tool_name)
                    return tool_error("UNKNOWN_TOOL", f"No handler for tool {call.tool_name!r} is configured.")
                output = await asyncio.wait_for(self._call(handler, call.input, context), ENTRY_POINT_TIMEOUT)
            if isinstance(output, dict) and "error" in output and len(output) == 1:
                outcome = "error"
            return output
        except TimeoutError:
            outcome = "error"
            return tool_error("TOOL_TIMEOUT", f"Tool {call.tool_name!r} did not answer in time.")
        except Exception as exc:  # a broken tool must not break the conversation
            outcome = "error"
            log.exception("tool %r failed", call.tool_name)
            return tool_error("TOOL_FAILED", f"Tool {call.tool_name!r} failed: {type(exc).__name__}")
        finally:
            self._metrics.tool_calls.labels(call.tool_name, outcome).inc()

    @staticmethod
    async def _call(handler: ToolHandler, arguments: Any, context: ToolContext) -> Any:
        result = handler(arguments, context)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _run_url(self, tool: ToolSettings, call: ToolCall, context: ToolContext) -> Any:
        body = {
            "toolName": call.tool_name,
            "toolCallId": call.tool_call_id,
            "input": call.input,
            "conversationId": context.conversation_id,
            "userId": context.user_id,
            "channel": context.channel,
        }
        timeout = aiohttp.ClientTimeout(total=tool.timeout)
        try:
            async with self._http.post(tool.url, json=body, headers=tool.headers, timeout=timeout) as resp:
                if not 200 <= resp.status < 300:
                    text = (await resp.text(errors="replace"))[:200]
                    return tool_error("TOOL_HTTP_ERROR", f"Tool endpoint answered {resp.status}: {text}")
                try:
                    return await resp.json(content_type=None)
                except ValueError:
                    return tool_error("TOOL_BAD_RESPONSE", "Tool endpoint did not answer with JSON.")
        except (TimeoutError, aiohttp.ServerTimeoutError):
            return tool_error("TOOL_TIMEOUT", f"Tool {call.tool_name!r} did not answer within {tool.timeout:g}s.")
        except aiohttp.ClientError as exc:
            return tool_error("TOOL_UNREACHABLE", f"Tool endpoint unreachable: {type(exc).__name__}")
