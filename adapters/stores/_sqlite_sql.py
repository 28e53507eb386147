"""The SQLite store's schema and the statements that carry its atomicity (each is one statement)."""

from __future__ import annotations

from collections.abc import Sequence

#: MIGRATIONS[n] takes the schema from version n to n + 1 (``PRAGMA user_version``).
MIGRATIONS: Sequence[Sequence[str]] = (
    (
        """CREATE TABLE journal (
            key TEXT PRIMARY KEY,
            conversation TEXT NOT NULL,
            event TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
            progress TEXT NOT NULL DEFAULT '{}',
            attempts INTEGER NOT NULL DEFAULT 0,
            received_at REAL NOT NULL,
            created_at REAL NOT NULL,
            finished_at REAL)""",
        # Partial indexes: resuming reads only pending rows, purging only finished ones.
        "CREATE INDEX journal_pending ON journal (received_at) WHERE status = 'pending'",
        "CREATE INDEX journal_head ON journal (conversation, received_at) WHERE status = 'pending'",
        "CREATE INDEX journal_finished ON journal (finished_at) WHERE finished_at IS NOT NULL",
        """CREATE TABLE conversations (
            scope_key TEXT PRIMARY KEY,
            conversation_id TEXT,
            user_id TEXT NOT NULL,
            last_message_id TEXT,
            updated_at REAL NOT NULL,
            paused INTEGER NOT NULL DEFAULT 0,
            touched_at REAL NOT NULL)""",
        "CREATE INDEX conversations_touched ON conversations (touched_at)",
        "CREATE TABLE links (identity_key TEXT PRIMARY KEY, user_id TEXT NOT NULL) WITHOUT ROWID",
        "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL) WITHOUT ROWID",
        "CREATE INDEX kv_expires ON kv (expires_at) WHERE expires_at IS NOT NULL",
        "CREATE TABLE locks (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL) WITHOUT ROWID",
    ),
    (
        # Who spoke where (admin API, forgetting a person), and links by target (a person's identities).
        """CREATE TABLE identities (
            identity_key TEXT PRIMARY KEY,
            first_seen REAL NOT NULL,
            last_seen REAL NOT NULL,
            touched_at REAL NOT NULL) WITHOUT ROWID""",
        "CREATE INDEX identities_touched ON identities (touched_at)",
        """CREATE TABLE identity_conversations (
            identity_key TEXT NOT NULL,
            conversation_key TEXT NOT NULL,
            last_seen REAL NOT NULL,
            PRIMARY KEY (identity_key, conversation_key)) WITHOUT ROWID""",
        "CREATE INDEX identity_conversations_seen ON identity_conversations (last_seen)",
        "CREATE INDEX links_user ON links (user_id)",
    ),
    (
        # What the combined calls (adapters.stores._sqlite_batched) keep on a pending entry, as the
        # Redis store does: the read noted before asking the agent (JSON, gateway.batched.READ_NOTE)
        # and the sender's rate count taken when it was journaled.
        "ALTER TABLE journal ADD COLUMN note TEXT",
        "ALTER TABLE journal ADD COLUMN rate_count INTEGER",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

JOURNAL_ADD = """
INSERT INTO journal (key, conversation, event, status, progress, attempts, received_at, created_at,
                     finished_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    conversation = excluded.conversation, event = excluded.event, status = excluded.status,
    progress = excluded.progress, attempts = excluded.attempts, received_at = excluded.received_at,
    created_at = excluded.created_at, finished_at = excluded.finished_at, note = NULL, rate_count = NULL
-- A key whose dedup TTL ran out counts as new, as it does when Redis expires the key.
WHERE journal.finished_at IS NOT NULL AND journal.finished_at <= ?
"""
ENTRY_COLUMNS = "event, progress, attempts, note, rate_count"
INCR = """
INSERT INTO kv (key, value, expires_at) VALUES (?1, '1', ?2 + ?3)
ON CONFLICT (key) DO UPDATE SET
    value = CASE WHEN kv.expires_at <= ?2 THEN '1' ELSE CAST(CAST(kv.value AS INTEGER) + 1 AS TEXT) END,
    -- The window runs from the first increment; later increments must not extend it.
    expires_at = CASE WHEN kv.expires_at IS NULL OR kv.expires_at <= ?2 THEN ?2 + ?3 ELSE kv.expires_at END
RETURNING value
"""
TRY_LOCK = """
INSERT INTO locks (key, owner, expires_at) VALUES (?1, ?2, ?3 + ?4)
ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
WHERE locks.owner = excluded.owner OR locks.expires_at <= ?3
RETURNING 1
"""
TOUCH_IDENTITY = """
INSERT INTO identities (identity_key, first_seen, last_seen, touched_at) VALUES (?1, ?2, ?2, ?3)
ON CONFLICT (identity_key) DO UPDATE SET
    -- A record idle past the conversation TTL counts as new, as when Redis expires it.
    first_seen = CASE WHEN identities.touched_at <= ?4 THEN ?2 ELSE identities.first_seen END,
    last_seen = CASE WHEN identities.touched_at <= ?4 THEN ?2 ELSE max(identities.last_seen, ?2) END,
    touched_at = ?3
"""
TOUCH_IDENTITY_CONVERSATION = """
INSERT INTO identity_conversations (identity_key, conversation_key, last_seen) VALUES (?, ?, ?)
ON CONFLICT (identity_key, conversation_key) DO UPDATE SET last_seen = excluded.last_seen
"""
#: every journal row of a conversation loses its payload; pending ones are abandoned
FORGET_JOURNAL = """
UPDATE journal SET event = '', progress = '{}', conversation = '', note = NULL,
    status = CASE status WHEN 'pending' THEN 'failed' ELSE status END,
    finished_at = coalesce(finished_at, ?2)
WHERE conversation = ?1
"""
#: the oldest pending entry of a conversation (?1), its attempt counted, as ENTRY_COLUMNS
COUNTED_HEAD = f"""
UPDATE journal SET attempts = attempts + 1
WHERE rowid = (SELECT rowid FROM journal WHERE conversation = ?1 AND status = 'pending'
               ORDER BY received_at, rowid LIMIT 1)
RETURNING {ENTRY_COLUMNS}
"""
#: the conversation of scope ?1 unless idle since ?2, and the link of identity ?3, in one row
#: (conversation_id, user_id, last_message_id, updated_at, paused, link); user_id NULL: none
CONVERSATION_AND_LINK = """
SELECT c.conversation_id, c.user_id, c.last_message_id, c.updated_at, c.paused, l.user_id
FROM (SELECT 1) LEFT JOIN conversations AS c ON c.scope_key = ?1 AND c.touched_at > ?2
LEFT JOIN links AS l ON l.identity_key = ?3
"""
#: put a conversation (the columns in order, touched_at ?7), keeping the paused flag of a row
#: still alive (touched after ?8): a pause set or lifted meanwhile by staff or an operator wins
REMEMBER_CONVERSATION = """
INSERT INTO conversations VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT (scope_key) DO UPDATE SET
    conversation_id = excluded.conversation_id, user_id = excluded.user_id,
    last_message_id = excluded.last_message_id, updated_at = excluded.updated_at,
    paused = CASE WHEN conversations.touched_at > ?8 THEN conversations.paused ELSE excluded.paused END,
    touched_at = excluded.touched_at
RETURNING paused
"""

#: a pending entry's progress (a finished one is never brought back)
JOURNAL_PROGRESS = "UPDATE journal SET progress = ?, attempts = ? WHERE key = ? AND status = 'pending'"
#: finish a pending entry (the event stays until the purge, so an operator can read why it failed)
JOURNAL_FINISH = "UPDATE journal SET status = ?, finished_at = ? WHERE key = ? AND status = 'pending'"
#: give a lease back, only if this owner holds it
UNLOCK = "DELETE FROM locks WHERE key = ? AND owner = ?"
#: a value with its expiry (None: none)
SET_VALUE = "INSERT OR REPLACE INTO kv VALUES (?, ?, ?)"
