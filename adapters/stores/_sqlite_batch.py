"""Group commit for the SQLite store: statements of concurrent callers share one transaction.

A burst of webhooks used to wait for one ``fsync``ed commit each, one after another on the store's
single connection. Here every statement is queued; one writer runs whatever is queued in one
``BEGIN IMMEDIATE`` … ``COMMIT`` on its own thread, so one flush serves all of them, and statements
arriving meanwhile form the next batch. Each caller gets its result only after the commit that
holds its statement (``synchronous=FULL``: on disk), so an acknowledged event is still durable.

A statement that fails on its own (an SQL error) fails only its caller; an error that ends the
transaction (disk full, I/O, busy) or a failed commit fails every caller of the batch, none of
whose writes then happened.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
#: statements per transaction at most (a huge backlog still commits now and then)
MAX_BATCH = 500


class _Statement:
    __slots__ = ("fetch", "future", "params", "sql")

    def __init__(self, sql: str, params: Sequence[Any], fetch: bool, future: asyncio.Future[Any]) -> None:
        self.sql, self.params, self.fetch, self.future = sql, params, fetch, future


class GroupCommitter:
    """One sqlite3 connection on one thread; :meth:`execute` queues, a writer task commits batches."""

    def __init__(self, connection: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self._conn = connection
        self._executor = executor
        self._queue: list[_Statement] = []
        self._writer: asyncio.Task[None] | None = None
        #: how many transactions and statements went through (for tests and the benchmark)
        self.commits = 0
        self.statements = 0

    @classmethod
    async def open(cls, path: str, timeout: float) -> GroupCommitter:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, lambda: sqlite3.connect(
                path, timeout=timeout, isolation_level=None, check_same_thread=False))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(conn, executor)

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` with the connection on its thread, between batches (setup, migrations)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, self._conn)

    async def execute(self, sql: str, params: Sequence[Any] = (), *, fetch: bool = False) -> Any:
        """The statement's rows (``fetch``) or changed-row count, once its transaction committed."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Statement(sql, params, fetch, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="sqlite-group-commit")
        return await future

    async def close(self) -> None:
        writer = self._writer
        if writer is not None:
            await asyncio.wait([writer])
        await self.call(lambda conn: conn.close())
        self._executor.shutdown(wait=True)

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                try:
                    # Not cancellable half-way: the thread runs the batch to its end regardless.
                    results = await asyncio.shield(loop.run_in_executor(self._executor, self._run, batch))
                except BaseException as exc:  # the loop is going away: nobody must wait forever
                    results = [exc] * len(batch)
                for statement, result in zip(batch, results, strict=True):
                    if statement.future.done():
                        continue  # its caller was cancelled; the write happened anyway
                    if isinstance(result, BaseException):
                        statement.future.set_exception(result)
                    else:
                        statement.future.set_result(result)
        finally:
            self._writer = None

    def _run(self, batch: list[_Statement]) -> list[Any]:
        """On the connection's thread: the batch in one transaction (one statement: autocommit)."""
        conn = self._conn
        results: list[Any] = []
        single = len(batch) == 1
        try:
            if not single:
                conn.execute("BEGIN IMMEDIATE")
            for statement in batch:
                try:
                    cursor = conn.execute(statement.sql, statement.params)
                    results.append(cursor.fetchall() if statement.fetch else cursor.rowcount)
                except sqlite3.Error as exc:
                    if not single and not conn.in_transaction:
                        raise  # the error ended the transaction: nothing of the batch happened
                    results.append(exc)
            if not single:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return [exc] * len(batch)
        self.commits += 1
        self.statements += len(batch)
        return results
