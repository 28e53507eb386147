"""Prometheus metrics, one registry per app so several gateways can live in one process (tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_SLOW = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60)


class Metrics:
    """Every metric the gateway exports; channels add to these through ``services.metrics``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.inbound_events = Counter(
            "switchboard_inbound_events", "Inbound events by channel and outcome", ["channel", "outcome"],
            registry=r,
        )
        self.webhook_rejected = Counter(
            "switchboard_webhook_rejected", "Refused webhook requests by channel and status",
            ["channel", "status"], registry=r,
        )
        self.agent_calls = Counter(
            "switchboard_agent_calls", "Agent API calls by agent, kind and outcome", ["agent", "kind", "outcome"],
            registry=r
        )
        self.turns = Counter("switchboard_turns", "Finished turns by channel and outcome",
                             ["channel", "outcome"], registry=r)
        self.errors = Counter("switchboard_errors", "Errors by kind", ["kind"], registry=r)
        self.delivery_failures = Counter(
            "switchboard_delivery_failures", "Outbound messages the platform refused for good",
            ["channel", "reason"], registry=r,
        )
        self.tool_calls = Counter("switchboard_tool_calls", "Client-side tool calls by tool and outcome",
                                  ["tool", "outcome"], registry=r)
        self.ack_seconds = Histogram(
            "switchboard_ack_seconds", "Webhook time to acknowledge", ["channel"], buckets=_FAST, registry=r
        )
        self.first_token_seconds = Histogram(
            "switchboard_time_to_first_token_seconds", "Agent time to first answer token",
            ["channel"], buckets=_SLOW, registry=r,
        )
        self.turn_seconds = Histogram(
            "switchboard_turn_seconds", "Whole turn duration", ["channel"], buckets=_SLOW, registry=r
        )

        self.budget_waiting = Gauge(
            "switchboard_agent_budget_waiting", "Agent calls waiting for the API key's rate budget", ["agent"],
            registry=r
        )
        self.budget_wait_seconds = Histogram(
            "switchboard_agent_budget_wait_seconds", "Time agent calls waited for the rate budget",
            ["agent"], buckets=(0, 0.01, *_SLOW), registry=r,
        )
        self.budget_rejected = Counter(
            "switchboard_agent_rejected", "Agent calls the API refused with 429 (over its rate limit)", ["agent"],
            registry=r
        )

        self.channel_agent = Gauge(
            "switchboard_channel_agent", "1 for the agent each channel talks to", ["channel", "agent"], registry=r
        )

        # Platform rate limits (gateway/pacing.py), by channel and the kind of scope limited.
        self.rate_limited = Counter(
            "switchboard_channel_rate_limited", "Platform 429s, by channel and the scope they paused",
            ["channel", "scope"], registry=r,
        )
        self.rate_limit_waiting = Gauge(
            "switchboard_channel_rate_limit_waiting",
            "Calls and turns waiting now for a platform rate limit, by channel and scope", ["channel", "scope"],
            registry=r,
        )
        self.rate_limit_wait_seconds = Counter(
            "switchboard_channel_rate_limit_wait_seconds",
            "Time spent waiting for platform rate limits, by channel and scope", ["channel", "scope"], registry=r,
        )
        self.delivery_deadline_exceeded = Counter(
            "switchboard_delivery_deadline_exceeded",
            "Answers given up after waiting out platform rate limits for gateway.delivery_deadline (the "
            "operator should look)", ["channel"], registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
