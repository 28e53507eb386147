"""Group commit for the SQLite store: statements of concurrent callers share one transaction.

A burst of webhooks used to wait for one ``fsync``ed commit each, one after another on the store's
single connection. Here every statement is queued; one writer runs whatever is queued in one
``BEGIN IMMEDIATE`` … ``COMMIT`` on its own thread, so one flush serves all of them, and statements
arriving meanwhile form the next batch. Each caller gets its result only after the commit that
holds its statement (``synchronous=FULL``: on disk), so an acknowledged event is still durable.

Besides single statements, a caller can queue a *unit* (:meth:`GroupCommitter.run`): a function of
the connection running several statements that must happen together (a turn's combined store
calls, :mod:`adapters.stores._sqlite_batched`). It runs in the batch's transaction inside a
``SAVEPOINT`` of its own, so one trip to the thread and one commit serve all its statements, and a
unit that raises has its partial writes rolled back and fails only its caller.

A statement or unit that fails on its own (an SQL error, a unit's own exception) fails only its
caller; an error that ends the transaction (disk full, I/O, busy) or a failed commit fails every
caller of the batch, none of whose writes then happened.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
#: statements (or units) per transaction at most (a huge backlog still commits now and then)
MAX_BATCH = 500


class _Work:
    """One statement (``sql``) or one unit (``unit``) and the future its caller waits on."""

    __slots__ = ("fetch", "future", "params", "sql", "unit")

    def __init__(self, sql: str, params: Sequence[Any], fetch: bool, unit: Callable[[sqlite3.Connection], Any] | None,
                 future: asyncio.Future[Any]) -> None:
        self.sql, self.params, self.fetch, self.unit, self.future = sql, params, fetch, unit, future


class GroupCommitter:
    """One sqlite3 connection on one thread; :meth:`execute` and :meth:`run` queue, a writer task
    commits batches."""

    def __init__(self, connection: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self._conn = connection
        self._executor = executor
        self._queue: list[_Work] = []
        self._writer: asyncio.Task[None] | None = None
        #: how many transactions, statements and units went through (for tests and the benchmark)
        self.commits = 0
        self.statements = 0
        self.units = 0

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
        return await self._queued(sql, params, fetch, None)

    async def run(self, unit: Callable[[sqlite3.Connection], T]) -> T:
        """What ``unit(connection)`` returned, once the transaction holding its writes committed.

        ``unit`` runs on the connection's thread inside a batch's transaction: it must not commit,
        roll back or begin, nor touch the event loop. What it raises is raised here, its writes
        undone."""
        result: T = await self._queued("", (), False, unit)
        return result

    def _queued(self, sql: str, params: Sequence[Any], fetch: bool,
                unit: Callable[[sqlite3.Connection], Any] | None) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Work(sql, params, fetch, unit, future))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="sqlite-group-commit")
        return future

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
                for work, result in zip(batch, results, strict=True):
                    if work.future.done():
                        continue  # its caller was cancelled; the write happened anyway
                    if isinstance(result, BaseException):
                        work.future.set_exception(result)
                    else:
                        work.future.set_result(result)
        finally:
            self._writer = None

    def _run(self, batch: list[_Work]) -> list[Any]:
        """On the connection's thread: the batch in one transaction (one statement: autocommit)."""
        conn = self._conn
        results: list[Any] = []
        single = len(batch) == 1 and batch[0].unit is None
        try:
            if not single:
                conn.execute("BEGIN IMMEDIATE")
            for work in batch:
                if work.unit is not None:
                    results.append(self._unit(conn, work.unit))
                    continue
                try:
                    cursor = conn.execute(work.sql, work.params)
                    results.append(cursor.fetchall() if work.fetch else cursor.rowcount)
                except sqlite3.Error as exc:
                    if not single and not conn.in_transaction:
                        raise  # the error ended the transaction: nothing of the batch happened
                    results.append(exc)
            if not single:
                conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return [exc] * len(batch)
        self.commits += 1
        units = sum(1 for work in batch if work.unit is not None)
        self.units += units
        self.statements += len(batch) - units
        return results

    def _unit(self, conn: sqlite3.Connection, unit: Callable[[sqlite3.Connection], Any]) -> Any:
        """``unit``'s result, or what it raised with its writes rolled back (its savepoint)."""
        conn.execute("SAVEPOINT unit")
        try:
            result = unit(conn)
        except Exception as exc:
            if not conn.in_transaction:
                raise  # the error ended the whole transaction: the batch fails
            conn.execute("ROLLBACK TO unit")
            conn.execute("RELEASE unit")
            return exc
        conn.execute("RELEASE unit")
        return result
