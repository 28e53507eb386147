"""The prose of docs/benchmarks.md: method, causes of missed goals, and what profiling changed.

Kept apart from the numbers (``bench.report``) so that a re-run rewrites the tables and figures
and keeps the analysis; the cause of a missed goal is printed only when that run missed it.
Figures quoted here were measured during development on the machine described on the page.
"""

INTRO = """# Benchmarks

Speed is part of the product: the gateway must add almost nothing to the agent's own latency,
acknowledge webhooks at once under load, and carry many conversations on a small machine. This page
is written by the benchmark suite itself; reproduce it from the repository root with

```sh
{command}
```

(about 5 minutes; `python -m bench --quick` is the few-second smoke version that CI runs through
`tests/test_bench_smoke.py`, `python -m bench --only throughput,scale` runs some scenarios,
`--profile` adds the py-spy profile of the last section, and `--report-only` rewrites this page
from `docs/benchmarks/results.json`).

How it works: every part is a separate process on one machine: `switchboard serve` (`python -m
gateway serve`, one or several), the Chatbase API emulator (`bench/agent.py`: the stock emulator,
its faults set over HTTP, plus timestamps of the tokens it writes), the fake Slack and Twilio APIs
of the test suite (`bench/platform.py`, recording when each call arrived), a private `redis-server`,
the load generator (`bench/load.py`: signed webhooks built and signed before the clock starts,
sent over kept-alive connections by a minimal HTTP client so that its own cost stays out of the
measurements), and the baseline app (`bench/baseline.py`). Each figure is a distribution or a
ratio measured in the same run as what it is compared with; processes in different roles compare
timestamps through `CLOCK_MONOTONIC`, which Linux keeps system-wide. Every conversation is a new
one (a new Slack DM or SMS sender) with one message, answered by the emulator's rule for ordinary
messages (about a dozen word-sized tokens).
"""

ACK = """**Why the goal is missed.** A wave puts 200 requests on one Python process at once; they are
answered one after another on its event loop, so the p99 is the time to get through the whole wave,
not the time of one request. The baseline app (last row), which only checks the signature and
starts a task, shows the floor of this HTTP stack on this machine for the same waves.
On top of it, the gateway makes each event durable before answering: with Redis one Lua call per
event (redis-py spends about 0.1 to 0.2 ms of CPU on it), with SQLite one `fsync`ed commit per
event (`synchronous=FULL`) on the store's single connection, so a wave waits for 200 disk flushes
in a row. Profiling the webhook path also found an INFO log line for every webhook (`kind=inbound`,
about a tenth of the path) and `InboundEvent.to_json` built with `dataclasses.asdict` (another
tenth). What would close the gap, outside the files of this change: group commit in the SQLite
store (the inserts of concurrent webhooks in one transaction, one flush), `to_json` without
`asdict`, and that log line at DEBUG. Every wave was acknowledged far inside Slack's 3-second
deadline, without an error, and every event was answered afterwards."""

OVERHEAD_CONTEXT = """With an edit after every token instead (`update_interval = 0`, more edits than Slack's
rate limit allows) and an agent answering at once, the same arrival rate gave a last-token p99 of
about 30 ms on Redis and 125 ms on SQLite during development: every token then costs a Slack
call, and the final edit waits behind that work and, with SQLite, behind the store's `fsync`ed
writes."""

OVERHEAD = """**Why the goal is missed.** The first interval is the gateway's streaming path (read the
token, hand it to the Slack edit loop, call Slack). The last one also holds the writes that make
the answer durable before it is shown: the answer saved in the journal, then the conversation and
the message→conversation map of the feedback buttons, one after another, then the final edit.
With Redis each is a round trip; with SQLite each is an `fsync`ed commit queued behind the other
conversations' writes on the store's single connection, which is what the SQLite tail is made of.
Fixes outside the files of this change: write the conversation and the message map together (one
pipelined call) in `gateway/turns.py`, and group commit in the SQLite store."""

THROUGHPUT = """**Why the goal is missed, by a wide margin.** The baseline is very cheap: per answer it
parses one webhook, reads one stream and makes one HTTP call, and it keeps nothing. The gateway
does the same plus what the baseline lacks, and with the agent answering instantly that extra work
is the whole cost: a placeholder message then the final edit (two Slack calls instead of one),
about 18 Redis round trips (or SQLite statements) per answer (journal entry, lease, head, attempt
counter, rate-limit counter, identity record, conversation, link, progress saves, message map,
finish, lease release), per-conversation ordering. It all runs in one Python process, on one core:
the gateway's CPU per answer sets its throughput (the CPU table shows the emulator, fakes and
Redis using well under a core together). With a real agent, which takes seconds per answer,
throughput is bound by the agent and by `max_concurrency` (turns at once), not by this cost; what
this scenario measures is how many machines the gateway needs per answer per second. The last
section lists what profiling changed and what remains; none of the remaining items would bring 80%
of a baseline that spends several times less CPU per answer, short of running several gateway
processes per machine (scenario 5)."""

SCALE = """All conversations complete and memory stays far below the goal. The peak number of agent
streams open at once, however, is capped at 100 by the gateway's shared HTTP client (aiohttp's
default connection pool, created in `gateway/app.py`): the other conversations waited for a
connection. Sizing that pool from `max_concurrency` is a one-line change in `gateway/app.py`,
outside the files of this change. (Against the real API, Chatbase's rate limit of 100 requests per
10 seconds per key bounds concurrent streams long before that.)"""

MEMORY = """**Why the goal is missed for linked identities.** An unlinked identity's conversation fits
the budget. A linked one pays for three keys: the link, the conversation, and the reverse index of
the link (`linked:<userId>`, a Redis set, which Redis 7.0 stores as a hash table even with a single
member: about 250 bytes). Every key costs its name (the `switchboard:v1:` key names are pinned by
`tests/stores/test_backends.py`) and a key-space entry before any value, so with one key per link and per
conversation the link and the conversation alone already pass 300 bytes. Meeting 300 bytes
for linked identities needs a different layout: links and conversations as fields of hash buckets
(Redis keeps small hashes as compact listpacks), the reverse index as a small hash or sorted set
rather than a set, with the contract tests that pin the key names changed to match, and a clean-up
for bucketed conversations since Redis before 7.4 cannot expire a hash field. The second table
shows what else Redis keeps per person after one message and that this definition leaves out: the
identity record behind the admin API (the `ident…` keys, kept for the conversation TTL), the
finished event that deduplicates retries (`journal`, 7 days), and the message→conversation map of
the feedback buttons (in `val`, 30 days)."""

INSTANCES = """On this machine two processes help and a third does not: every process of the benchmark
shares the same two cores, so a second gateway takes what the first left idle and a third only
competes for it (its CPU per answer rises). Instances share nothing but Redis, which stays well
under a core here, so throughput grows with cores or machines; the webhook p99 stays where a
single process puts it."""

PROFILING = """## Profiling and what it changed

Method: `py-spy record` on the gateway during scenario 3's burst (`python -m bench --profile`;
the table at the end of this section is from this run), Redis `MONITOR` to count the store's round
trips, and the same harness run against the code before and after the changes below, interleaved
three times (this machine was shared with other work, so end-to-end differences under about 15%
are noise here).

What was found and changed:

1. **Redis under a burst (a correctness bug).** redis-py's default connection pool refuses a
   101st connection ("Too many connections"), and the store reported that as Redis being
   unavailable: under a burst of 500 Slack events, webhooks got 503s and drains died, and two
   minutes later 144 of the 500 conversations were still unanswered (every sweep re-kicked them
   all at once and hit the same wall). The store now uses a blocking pool of 64 connections:
   commands queue for a connection instead of failing (`adapters/stores/redis.py`). Scenarios 3
   to 5 could not complete on Redis before.
2. **Fewer Redis round trips per answer: 21.2 → 18.2 to 18.5** (`MONITOR`; Twilio, Slack): a
   conversation's head is one Lua call instead of a range plus hash reads; finishing an entry no
   longer re-reads its conversation (the head read remembers it); a drain reads the head once after
   each entry instead of twice. The store calls around one drained entry went from about 780 to
   400 µs of gateway CPU when timed alone; end to end, under the burst's concurrency, the change
   in CPU per answer stayed within this machine's noise (3.1 to 3.7 ms before, 3.1 to 4.0 after).
3. **New Redis connections no longer read package metadata.** redis-py 8 looks its own version up
   in the installed packages for every new connection (about a millisecond); a burst grows the
   pool to 64 connections, and in the first burst that lookup was 11% of the webhook path.
4. **The sweeper no longer loads the journal.** Every 5 seconds it read every pending entry (and
   decoded its event) only to find their conversations: with a backlog of 1,000 events, 1,000
   JSON documents per sweep per instance. It now asks the store for those conversations
   (`journal_conversations()`, a new method of the three stores).

Tried and dropped: starting a conversation's drain only once a burst of webhooks had paused
(5 ms quiet, 100 ms at most), so that turns would not compete with acknowledgements; the webhook
p99 of scenario 1 did not move, so the code went. Also tried, without a conclusive result on this
shared machine: uvloop and the hiredis parser.

What the profile says remains, outside the files of this change (share of the gateway's busy time
in the table below, or of the webhook path where stated):

- Store round trips made by a turn (about 10 of the 18): reading the conversation, the link and
  the identity record could be one pipelined call, and so could writing the conversation and the
  message map at the end (`gateway/turns.py`).
- The placeholder: an answer that arrives within, say, half a second could be posted directly
  instead of a placeholder plus an edit, saving a Slack call and a progress save per answer
  (`gateway/editing.py`; the Slack tests expect the placeholder first).
- `InboundEvent.to_json` through `dataclasses.asdict` (about 10% of the webhook path) and an INFO
  log line per webhook and per turn (about 10% of the webhook path).
- SQLite: one `fsync` per write on one connection; group commit would serve the acknowledgements,
  the overhead tail and throughput at once (`adapters/stores/sqlite.py`).
- The shared HTTP client's 100-connection pool (`gateway/app.py`, see scenario 4)."""

BUDGET = """Every request to the agent first takes a token from the API key's bucket (Redis: one Lua call;
one process: in memory), so the instances together keep to the limit instead of each retrying on
its own. Before the first answer the bucket lets only half the budget go; the answers' rate-limit
headers then set it to what the API says remains, less the calls still in flight, and when an
answer says the window is full it waits until `X-RateLimit-Reset` and sends one probe whose
answer opens the rest. A turn that waits gives its `max_concurrency` slot to the next one, so every
person sees the channel's waiting signal at once (Slack's placeholder here) and keeps their place;
`/metrics` shows `switchboard_agent_budget_waiting`, `switchboard_agent_budget_wait_seconds` and
`switchboard_agent_rejected_total`. 300 = 3 x 100 is the tightest case: a single slot left unused
in a window pushes the last call into a fourth window (+10 s), which earlier versions of the
bucket did. Before the budget, the same burst provoked 128 refused calls with one instance and
251-268 with three (issue 16)."""

ISOLATION = """Platforms limit in scopes (Slack per method per workspace and about one post per second per
channel; Telegram about one message per second per chat, 20 per minute per group, 30 per second per
bot; Meta per page; Twilio per account) and their 429s do not say which one was hit. Each channel
names the scopes of every call and the core paces each with its own bucket (`gateway/pacing.py`): a
429 pauses the refused conversation's own scope for its `Retry-After` and only slows the wider
scopes (to 80%, never below half, recovering in seconds). A turn waiting out a refusal gives its
`max_concurrency` slot back, and its delivery is retried until `gateway.delivery_deadline` (1 hour)
instead of five times. `/metrics` shows `switchboard_channel_rate_limit_waiting`,
`switchboard_channel_rate_limit_wait_seconds_total` and `switchboard_channel_rate_limited_total`
by channel and scope; `GET /admin/waiting` lists who waits and why.

Before issue 17, the same run on the same machine (old code, same driver): Slack's others p50/p95
went from 0.08/0.31 s before the refusal to 3.30/5.79 s during it, because a 429 on `chat.postMessage`
or `chat.update` in one channel parked that method for every channel; Telegram 0.18 → 0.43 s and
Twilio 0.15 → 0.40 s (p95) did not stall, but Twilio lost the refused person's first answer: its five
delivery attempts ran out after about 25 s, the entry was marked failed, and the apology was refused
too. `tests/test_pressure_isolation.py` (slow) runs this scenario at full size and asserts the goal;
`SWITCHBOARD_PRESSURE_LONG=1` adds a 10-minute refusal."""
