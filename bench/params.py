"""How big each scenario is: the full run (``python -m bench``) and the smoke run (``--quick``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Params:
    #: the gateway's stores compared in scenarios 1 to 3
    stores: tuple[str, ...] = ("sqlite", "redis")
    # 1. ack latency: waves of signed Slack events while the agent takes `ack_agent_latency` per answer
    ack_waves: int = 5
    ack_wave_size: int = 200
    ack_agent_latency: float = 2.0
    # 2. overhead: conversations sent at `overhead_rate` per second, tokens `overhead_token_delay` apart
    overhead_count: int = 300
    overhead_rate: float = 25.0
    overhead_token_delay: float = 0.02
    #: the agent's time to first token; also the Slack edit interval (1 s, the default)
    overhead_agent_latency: float = 1.0
    # 3. throughput: a burst of `throughput_count` webhooks, `throughput_concurrency` in flight, per system
    throughput_count: int = 1000
    throughput_concurrency: int = 50
    throughput_repeats: int = 2
    # 4. scale: conversations streaming at once, tokens this far apart; Redis identities for MEMORY USAGE
    scale_streams: int = 1000
    scale_token_delay: float = 0.2
    scale_identities: int = 100_000
    # 5. instances
    instances: tuple[int, ...] = (1, 2, 3)
    instances_count: int = 1500
    # 6. rate budget: a burst of `budget_count` first messages against an emulator enforcing
    #    `budget_limit` requests per `budget_window` seconds, with 1 and 3 instances
    budget_count: int = 300
    budget_limit: int = 100
    budget_window: float = 10.0
    budget_instances: tuple[int, ...] = (1, 3)
    # 7. isolation: `isolation_conversations` people at `isolation_rate` messages/s; one of them refused
    #    (429 + Retry-After `isolation_retry_after`) for `isolation_refuse` s after `isolation_warmup` s
    isolation_conversations: int = 300
    isolation_rate: float = 10.0
    isolation_warmup: float = 10.0
    isolation_refuse: float = 30.0
    isolation_retry_after: float = 5.0
    isolation_cooldown: float = 5.0
    #: seconds any one run may take to deliver its answers
    deadline: float = 180.0
    #: seconds between waves, and to wait after the last answer for trailing calls (its final edit)
    pause: float = 0.5


FULL = Params()
QUICK = Params(
    stores=("redis",),
    ack_waves=1, ack_wave_size=10, ack_agent_latency=0.05,
    overhead_count=6, overhead_rate=40.0, overhead_agent_latency=0.05,
    throughput_count=10, throughput_concurrency=5, throughput_repeats=1,
    scale_streams=10, scale_token_delay=0.01, scale_identities=200,
    instances=(1, 2), instances_count=10,
    budget_count=30, budget_limit=10, budget_window=1.0, budget_instances=(1, 2),
    isolation_conversations=20, isolation_rate=10.0, isolation_warmup=1.0, isolation_refuse=2.0,
    isolation_retry_after=0.5, isolation_cooldown=1.0,
    deadline=30.0,
    pause=0.05,
)
