"""What to do when a turn fails: wait, retry, apologise, or give up for good."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

from gateway.channel import Answer, Reply
from gateway.errors import (
    AgentAuthError,
    AgentError,
    AgentRateLimited,
    ChannelError,
    ChannelPermanentError,
    ChannelRateLimited,
    CreditsExhausted,
)
from gateway.events import InboundEvent

if TYPE_CHECKING:
    from gateway.channel import Channel
    from gateway.dispatch import Dispatcher

log = logging.getLogger(__name__)

APOLOGY = "Sorry, I can't answer right now. Please try again in a few minutes."
DELIVERY_ATTEMPTS = 5
MAX_EVENT_ATTEMPTS = 5
MAX_WAIT = 60.0


async def attempt_turn(dispatcher: Dispatcher, channel: Channel, event: InboundEvent, reply: Reply) -> Answer | None:
    """Run the turn with the failure policy; None when it ended in an apology or was refused.

    Agent 429/5xx were already retried by the agent client; what reaches here is final for the
    agent (apologise), while channel failures are retried here. The turn runner reuses an answer
    saved in the progress, so retrying delivery never asks the agent twice.
    """
    metrics = dispatcher.metrics
    for attempt in range(1, DELIVERY_ATTEMPTS + 1):
        try:
            answer = await dispatcher.runner.run(channel, event, reply)
            return answer if answer is not None else Answer("")
        except ChannelPermanentError as exc:
            metrics.delivery_failures.labels(event.channel, type(exc).__name__).inc()
            log.error("channel %s refused delivery for good: %s", event.channel, exc)
            return None
        except ChannelRateLimited as exc:
            wait = min(exc.retry_after, MAX_WAIT)
            metrics.errors.labels("channel_rate_limited").inc()
        except ChannelError as exc:
            wait = backoff(attempt)
            metrics.errors.labels("channel_error").inc()
            log.warning("channel %s failed (attempt %d): %s", event.channel, attempt, exc)
        except (AgentAuthError, CreditsExhausted) as exc:
            metrics.errors.labels("agent_" + type(exc).__name__).inc()
            log.error("agent refused (%s: %s): the operator must act", exc.code, exc)
            await apologise(reply)
            return None
        except AgentRateLimited as exc:
            wait = min(exc.retry_after, MAX_WAIT)
            metrics.errors.labels("agent_rate_limited").inc()
        except AgentError as exc:
            metrics.errors.labels("agent_" + type(exc).__name__).inc()
            log.error("agent failed for %s: %s (%s)", event.journal_key, exc, exc.code)
            if event.kind != "feedback":  # a lost thumbs-up is not worth a chat message
                await apologise(reply)
            return None
        if attempt < DELIVERY_ATTEMPTS:
            await asyncio.sleep(wait)
    log.error("giving up on %s after %d attempts", event.journal_key, DELIVERY_ATTEMPTS)
    await apologise(reply)
    return None


async def apologise(reply: Reply) -> None:
    try:
        await reply.fail(APOLOGY)
    except (ChannelError, AgentError, OSError) as exc:
        log.error("could not even send the apology: %s", exc)


def backoff(attempt: int) -> float:
    """Jittered exponential backoff, capped."""
    return float(min(MAX_WAIT, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))
