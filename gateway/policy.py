"""What to do when a turn fails: wait, retry, apologise, or give up for good."""

from __future__ import annotations

import asyncio
import logging
import random
import time
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
from gateway.pacing import Scope

if TYPE_CHECKING:
    from gateway.channel import Channel
    from gateway.dispatch import Dispatcher

log = logging.getLogger(__name__)

APOLOGY = "Sorry, I can't answer right now. Please try again in a few minutes."
DELIVERY_ATTEMPTS = 5
MAX_EVENT_ATTEMPTS = 5
MAX_WAIT = 60.0
#: progress key: when the platform first refused this answer with a rate limit (Unix time)
LIMITED_SINCE = "rate_limited_since"


async def attempt_turn(dispatcher: Dispatcher, channel: Channel, event: InboundEvent, reply: Reply) -> Answer | None:
    """Run the turn with the failure policy; None when it ended in an apology or was refused.

    Agent 429/5xx were already retried by the agent client; what reaches here is final for the
    agent (apologise), while channel failures are retried here. The turn runner reuses an answer
    saved in the progress, so retrying delivery never asks the agent twice.

    A platform rate limit is waited out, not counted as a failed attempt: the turn gives its slot
    back while it sleeps and tries again until ``gateway.delivery_deadline`` has passed since its
    first refusal (saved in the progress, so a resumed turn keeps its deadline). Each run is bounded
    by ``turn_timeout``; the waits between runs are not.
    """
    metrics = dispatcher.metrics
    attempt = 0
    while attempt < DELIVERY_ATTEMPTS:
        attempt += 1
        try:
            answer = await asyncio.wait_for(dispatcher.runner.run(channel, event, reply), dispatcher.turn_timeout)
            return answer if answer is not None else Answer("")
        except ChannelPermanentError as exc:
            metrics.delivery_failures.labels(event.channel, type(exc).__name__).inc()
            log.error("channel %s refused delivery for good: %s", event.channel, exc)
            return None
        except ChannelRateLimited as exc:
            metrics.errors.labels("channel_rate_limited").inc()
            if not await wait_out_platform(dispatcher, channel, event, reply, exc):
                return None
            attempt -= 1  # waiting out a limit is not a failed attempt
            continue
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
            await reply.progress.flush()
            await asyncio.sleep(wait)
    log.error("giving up on %s after %d attempts", event.journal_key, DELIVERY_ATTEMPTS)
    await apologise(reply)
    return None


async def wait_out_platform(dispatcher: Dispatcher, channel: Channel, event: InboundEvent, reply: Reply,
                            limited: ChannelRateLimited) -> bool:
    """Sleep out a platform's 429 with the turn's slot given back; False once the delivery deadline
    has passed (the operator is alerted in the log and ``/metrics``, the person gets the apology if
    it can reach them, and the turn ends as failed)."""
    progress = reply.progress
    first = progress.data.get(LIMITED_SINCE)
    if not isinstance(first, (int, float)):
        first = progress.data[LIMITED_SINCE] = time.time()
        await progress.save()
    else:
        await progress.flush()  # a result left to the finish must not wait unsaved
    left = first + dispatcher.delivery_deadline - time.time()
    if left <= 0:
        dispatcher.metrics.delivery_deadline_exceeded.labels(event.channel).inc()
        log.error("ALERT: %s could not be delivered on %s: the platform kept refusing it (rate limited) "
                  "for %.0fs, past gateway.delivery_deadline; giving up", event.journal_key, event.channel,
                  time.time() - first)
        await apologise(reply)
        return False
    wait = max(0.05, min(limited.retry_after, left))
    scope = Scope("conversation", event.conversation_key, conversation=True)
    reason = f"delivery refused by the platform ({limited}); trying again"
    async with channel.pacer.waiting_on(scope, event.journal_key, reason, until=time.time() + wait):
        await asyncio.sleep(wait)
    return True


async def apologise(reply: Reply) -> None:
    try:
        await reply.fail(APOLOGY)
    except (ChannelError, AgentError, OSError) as exc:
        log.error("could not even send the apology: %s", exc)


def backoff(attempt: int) -> float:
    """Jittered exponential backoff, capped."""
    return float(min(MAX_WAIT, 0.5 * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0))
