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
`tests/test_bench_smoke.py`, `python -m bench --only throughput,scale` runs some scenarios
(`--only memory` only the Redis bytes per identity), `--profile` adds the py-spy profile of the
last section, and `--report-only` rewrites this page from `docs/benchmarks/results.json`).

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

_ACK_HOW = """A wave puts 200 requests on one Python process at once; they are answered one after
another on its event loop, so the p99 is the time to get through the whole wave, not the time of
one request.
The baseline app (last row), which only checks the signature and starts a task, shows the floor of
this HTTP stack on this machine for the same waves. Both stores journal a wave in one or two round
trips. SQLite by group commit: one `fsync` serves every webhook of a wave waiting on it, where each
used to wait for 200 flushes in a row (203 ms p99 before issue 18). Redis by pipelining
(`adapters/stores/_redis_batch.py`): the journal scripts of webhooks that arrive while one pipeline
is in flight go out together as the next, one `EVALSHA` each in arrival order, each webhook
answered with its own result; before, each made its own Lua call through redis-py, whose
connection pool wakes 200 waiting requests one at a time (p99 2.0 to 7.0 times the baseline's in
the interleaved runs made for this change, 1.8 to 3.0 times with it). Since then the turns' own
store calls go through a pipeline too and cost about half the CPU, which leaves the acknowledging
core freer (this run: 1.3 times). Full garbage collections, which walked every object start-up left
behind and held the loop for 65 to 97 ms of CPU in the middle of a wave, now walk only what came
after start-up (`gc.freeze()` in `switchboard serve`: 8 to 15 ms). The webhooks journal through a
Redis connection pool of their own, so an acknowledgement never waits for a connection behind turn
work: in scenario 4's burst of 1,000 conversations at once, 204 webhooks got a 503 without it (the
1 s `webhook_store_timeout` ran out behind 1,000 drains' commands) and none with it."""

ACK = "**Why the goal is missed.** " + _ACK_HOW + """
What is left is the turns of this wave and the previous ones (leases, turn reads, the agent
requests, placeholder posts 0.3 s after a wave, answers 2 s after it), which share the acknowledging
core; on a machine shared with other work (see the load average above) that tail moves by two or
three times from run to run. What would reach the goal for certain: turns kept off the acknowledging
process's core (`--workers`, or turns in a process of their own), or drains that start only once the
intake has answered. Every wave was acknowledged inside Slack's 3-second deadline, and every
acknowledged event was answered afterwards."""

ACK_MET = "**How.** " + _ACK_HOW + """
On a machine shared with other work the tail still moves from run to run (the turns of the
previous waves share the acknowledging core); every wave was acknowledged inside Slack's 3-second
deadline, and every acknowledged event was answered afterwards."""

OVERHEAD_CONTEXT = """Since issue 18 an answer that is complete within 0.3 s (capped by `update_interval`) is posted
once, without placeholder; a slower one gets its placeholder then, and its first edit may come
`update_interval` after the turn started, as before, so the first words are still shown at once.
With an edit after every token instead (`update_interval = 0`, more edits than Slack's rate limit
allows) and an agent answering at once, the same arrival rate gave a last-token p99 of about 30 ms
on Redis and 125 ms on SQLite before issue 18: every token then costs a Slack call, and the final
edit waits behind that work."""

OVERHEAD = """**Why the goal is missed.** The first interval is the gateway's streaming path (read the
token, hand it to the Slack edit loop, call Slack); the last one also holds the writes that make
the answer durable before it is shown: one store call on either store since issue 18 (the answer
with the conversation and the message map; one Lua script on Redis, one unit of one group commit
on SQLite), then the intent of the post. Both met the goal at a load average of 1 or less; a
machine whose two cores are also busy with other work (the load average above) stretches the
tail, most on SQLite, whose writes wait for the `fsync` of the transaction in flight."""

THROUGHPUT = """**Why a goal is missed.** The baseline is very cheap: per answer it parses one webhook, reads
one stream and makes one HTTP call, and it keeps nothing. The gateway does the same plus what the
baseline lacks, and with the agent answering instantly that extra work is the whole cost: the
journal, the lease, the ordering, the rate-limit counter, the asked record, the conversation, the
intent saved before the visible post (exactly once), the finish, the shared agent rate budget and
the platform's pacing. Issue 18 cut the store's share to six round trips per answer (counted with
`MONITOR` in `tests/test_round_trips.py`, at the committer for SQLite) and made them cheap (one
pipeline for many turns' calls on Redis: 0.47 to 0.24 ms of store CPU per answer with 50 answers
at once; one group-commit unit each on SQLite). What remains, by the profile below: the event loop
itself (sockets, timers), the Slack calls (slack_sdk over aiohttp), the store client, the agent
stream, and rendering. The Slack path also pays for being slow under this overload: an answer that
is not complete 0.3 s after its turn started gets a placeholder and a final edit (two or three Slack
calls instead of one; the fake Slack's CPU per answer shows it), and with 50 turns at once on one
core most turns take longer than that even though the agent answers at once. Absolute CPU figures
also move with the machine: the baseline itself measured 0.49 to 0.87 ms per answer in runs made
the same hour, so the gateway/baseline ratio (2.2 to 3.6 times on SQLite, 2.5 to 4.1 on Redis
over the runs made for issue 18's last changes) is the steadier figure. With a real agent, which
takes seconds per answer, throughput is bound by the agent and by `max_concurrency` (turns at
once), not by this cost; what this scenario measures is
how many machines the gateway needs per answer per second, and `serve --workers N` (scenario 5)
spreads it over the cores of one."""

SCALE = """A thousand conversations start within a few milliseconds, each journaled before its
webhook is answered while the turns of the others already run: this is where acknowledgements and
turn work compete hardest. Memory stays far below the goal. A webhook refused with a 503 (the store
did not answer within `webhook_store_timeout`) is retried by a real platform and is owed no answer
here; it counts against the goal. (Against the real API, Chatbase's rate limit of 100 requests per
10 seconds per key bounds concurrent streams long before this.)"""

MEMORY = """**How a linked identity fits (issue 18's item 6).** In the v1 layout a linked one paid
for three keys: 616 bytes, the link (`link:<identity key>`, 152) and its reverse index (a
`linked:<userId>` set, which Redis 7.0 stores as a hash table even with one member: 248) beside
the conversation (216). Every key costs its name and a key-space entry before any value, so the
links are now fields of hash buckets under a `switchboard:v2:` prefix: `links:<n>` maps an identity
key to its userId (n = crc32 of the identity key mod 4,096) and `linked:<n>` holds the reverse index
(n from the userId), whose fields are only the identity key and a 7-bit tag of the userId (a lookup
checks its candidates' links). Redis keeps a hash of at most 512 fields of at most 64 bytes
(`hash-max-listpack-*`, the defaults) as one compact listpack: at 100,000 links a bucket has about
25 fields and a link costs the bytes in the table instead of 400. 4,096 buckets keep each compact
up to about 1.8 million links (with 1,024, measured at 283 bytes per linked identity, up to about
450,000); past that, or with ids over 64 bytes (Teams'), a bucket becomes a hash table: still
correct, only larger. The conversation keeps its own key, as Redis before 7.4 cannot expire a hash
field, but its string shrank from 120 to 90 characters (a UUID id as 22 base64 characters,
`updated_at` as whole milliseconds): jemalloc's 96-byte size class instead of 128, so 184 bytes
instead of 216, unlinked identities included. Ids longer than these (a userId past 29 characters
with UUID ids) move it to the next class, 16 bytes more.

**Upgrading from the v1 layout** needs no step and no downtime beyond the restart: the new code
reads both layouts in the same round trip, and moves a v1 link into its buckets, deleting the v1
keys in the same Lua script, the first time it reads or writes it (a turn of that person, a link
command, an admin lookup or a forget); v1 conversation strings are read as they are and rewritten
by the next turn. Links of people who never come back stay in v1, still found:
`redis-cli --scan --pattern 'switchboard:v1:link*'` lists them. Upgrade every instance together:
an old instance does not see the links a new one wrote (a link an old one writes afterwards does
win, as the newer). The second table shows what else Redis keeps per person after one message and
that this definition leaves out: the identity record behind the admin API (the `ident…` keys, kept
for the conversation TTL), the finished event that deduplicates retries (`journal`, 7 days), and
the message→conversation map of the feedback buttons (in `val`, 30 days)."""

INSTANCES = """Instances share nothing but Redis, which stays well under a core here, so throughput grows with
idle cores or machines; on this two-core machine every process of the benchmark (emulator, fake
APIs, Redis, load generator) shares the same cores, so a second gateway or worker only gains what
they leave free: in this run, at a load average of about 1, two processes gave about 1.5 times the
throughput of one and a third added nothing (no core left), and `serve --workers 2` about 1.6
times, with the lowest ack p99. Runs made while other work loaded the machine (load average 3 to
6) showed 0.67 to 1.28 times for two processes: the benchmark measures this machine as it is.
`serve --workers 2` is the same thing behind one port: the kernel spreads connections over the
workers (`SO_REUSEPORT`)."""

PROFILING = """## Profiling and what it changed

Method: `py-spy record` on the gateway during scenario 3's burst (`python -m bench --profile`;
the table at the end of this section is from this run), Redis `MONITOR` to count the store's round
trips (now a test: `tests/test_round_trips.py`), and `python -m bench --only throughput` run
before and after each change. This machine is shared with other work (load averages of 2 to 8
during these runs), so differences under about 15% between runs are noise; ratios within one run
(gateway against baseline) are steadier than absolute numbers.

### Issue 18: a third of the CPU per answer

Before: 3.2 to 4.0 ms of gateway CPU per answer, 12 to 22% of the baseline's throughput, about
18 store round trips per answer, scenario 1's p99 at 3.6 to 3.9 times the baseline's.

1. **Store round trips per answer: 19 → 6** (Slack DM and SMS alike, `MONITOR`; the test fails if
   they creep back, and counts SQLite's trips to its committer too). Each is one Lua script on
   Redis, one unit of one group commit on SQLite (`gateway/batched.py` composes the same steps one
   by one for any other store): (1) journal the event and count it for the per-person rate limit
   (`user_rate_limit`; counted once per event, where a resumed entry used to count again);
   (2) take the lease, read the head and count the attempt; (3) record who spoke where, read the
   conversation and the identity link, and note that read on the entry, which is the record that
   the agent is about to be asked (a resumed turn rebuilds its `asked` note from it); (4) save the
   agent's answer with the conversation and the message map (a new conversation is no longer saved
   apart when the agent names it, unless client actions follow); (5) the intent before the visible
   post; (6) finish the entry, read the next head and, none being left, release the lease. The
   post's own result is not saved apart: the finish drops a finished entry's progress anyway, and
   a crash in between is the same case as one inside the platform call, reconciled the same way
   (a turn that must wait instead, for a rate limit, saves it first). The release is one call with
   the finish again unless a lease renewal was under way meanwhile (the fix of a Redis hang longer
   than the lease is kept). The shared agent rate budget (two calls) and the platform's pacing
   bucket (one) are counted apart.
2. **Quick answers skip the placeholder** (Slack, Telegram): an answer complete within 0.3 s
   (capped by the update interval) is posted once, with its intent saved first like any post:
   one Slack call instead of two and two progress saves fewer per answer.
3. **SQLite group commit** (`adapters/stores/_sqlite_batch.py`): statements of concurrent callers
   run in one transaction on the store's thread, one `fsync` for all of them, each caller answered
   only after its commit. Together, 1 to 3 took the gateway's CPU per answer from 4.04 to 1.76 ms
   (SQLite) and from 3.72 to 2.76 ms (Redis, Slack path) in a run at load average 6, and scenario 1's
   SQLite p99 from 203 ms to under the baseline's.
4. **uvloop** (used when installed; the `fast` extra): in back-to-back runs, Redis 1.86 → 1.55 ms
   (Slack) and 1.84 → 1.58 ms (Twilio), SQLite 1.44 → 1.24 and 1.28 → 1.04 ms per answer, so it
   stays. **hiredis** (also in `fast`, used by redis-py when installed) could not be isolated: the
   run without it hit a burst 503 on this loaded machine. Acks first: the per-webhook log line is at
   DEBUG and `to_json` spells its fields out (already done before this issue); the webhooks'
   journal writes go through a Redis connection pool of their own (64 connections), so they never
   queue for a connection behind turn work: scenario 4's burst of 1,000 conversations at once got
   204 webhook 503s without it and none with it (see scenario 1's note for its p99).
5. **`switchboard serve --workers N`**: N processes on one port sharing a Redis store
   (`gateway/workers.py`); refused for SQLite and memory stores, whose guarantees are per process.
   The guarantees test `test_two_workers_on_one_port_answer_everything_once_in_order` runs against
   two workers (200 events and retries, every one answered once, in order, by both workers).
6. The benchmark now counts a refused webhook (503, which a platform retries) as an error owed no
   answer, instead of failing the whole run while waiting for it.
7. **Acks first on Redis** (scenario 1): the journal writes of concurrent webhooks share one
   pipeline (`adapters/stores/_redis_batch.py`, like the SQLite group commit; one or two pipelines
   per wave of 200), and `switchboard serve` freezes what start-up built out of the garbage
   collector's reach, so a full collection in a wave walks a few thousand objects instead of
   every module's. In six interleaved pairs of runs, Redis's p99 went from 2.0 to 7.0 times the
   baseline's (161 to 477 ms) to 1.8 to 3.0 times (92 to 150 ms), and its p50 from 74 to 129 ms
   to 35 to 82 ms. The turns' store scripts through the same batcher made no difference to
   this tail that stood out of the noise in three pairs of runs; they went through a pipeline
   later for their CPU (item 8).

8. **The turns' store calls through a pipeline too** (Redis): every script of the turns and of the
   agent budget goes through one shared `Pipeline`, so under load many turns' calls share a
   round trip. Measured apart from the rest (an answer's six store calls, 50 answers at once,
   3 x 3,000 answers): 0.46 to 0.50 ms of store CPU per answer before, 0.22 to 0.27 ms after.
9. **SQLite's combined calls as units of the group commit** (`adapters/stores/_sqlite_batched.py`):
   one trip to the store's thread and one commit per combined call (an answer's commits, 50 at a
   time: about 2,150 to about 710 per 3,000 answers; store CPU 0.33 to 0.22 ms per answer), and
   scenario 2's last-token p99 back under 10 ms.
10. **The agent's connection is kept** between answers: the client read the stream only up to
   `[DONE]` and left the end of the body unread, so aiohttp closed the connection and every answer
   opened a new one (11% of the gateway's busy samples in `BaseConnector.connect`, 0.6% after).
11. **Smaller things the profile showed:** the lease heartbeat is a timer, not a task, until a
   renewal is due; the `BatchedStore` protocol check (a runtime `isinstance` walking every member)
   is answered once per store class; an answer complete before its placeholder went out is posted
   once even when the turn itself was slow (`Reply.ready()`).
12. **Compact Redis layout for linked identities** (scenario 4): links and their reverse index
   in `switchboard:v2:` hash buckets, conversation strings with millisecond times and compact
   UUIDs; 616 → 290 bytes per linked identity, with a lazy migration of v1 keys.
13. **Lease fencing** (found by the chaos runs while measuring): a Redis hang longer than the lease
   could let a second worker resume an entry whose turn still ran, and both posted the answer;
   a running turn's progress writes are now made only while its drain holds the lease, so the
   stale turn stops at its next intent (`docs/guarantees.md`).

What the profile says remains (share of the gateway's busy time in the table below): the event
loop itself (sockets, timers), the Slack calls through slack_sdk (two or three per answer under
this overload, see scenario 3's note), the store client, the agent stream, and rendering."""

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
