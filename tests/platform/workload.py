"""A money-transfer workload through PgBouncer, bounded in count and time, that keeps score of every commit.

Each worker moves an amount between two accounts and logs the transfer under a unique id in one transaction.
Invariant: the sum of balances never changes. Every transaction whose COMMIT returned is *acknowledged* and must
be found afterwards; one whose COMMIT raised is *in doubt* (it may or may not have happened) and is counted. Every
request (connect, or one whole transaction) is timed: one that takes longer than the bound is *blocked*; a
watchdog cancels a request at twice the bound so the workload itself always ends.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid

import psycopg

ACCOUNTS = 100
START_BALANCE = 1_000_000


def setup(dsn: str, password: str) -> None:
    with psycopg.connect(dsn, password=password, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS platform_accounts (id int PRIMARY KEY, balance bigint NOT NULL)")
        conn.execute("CREATE TABLE IF NOT EXISTS platform_transfers (id uuid PRIMARY KEY, src int NOT NULL, "
                     "dst int NOT NULL, amount int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())")
        conn.execute("INSERT INTO platform_accounts SELECT g, %s FROM generate_series(1, %s) g "
                     "ON CONFLICT (id) DO NOTHING", [START_BALANCE, ACCOUNTS])


def total_and_ids(dsn: str, password: str) -> tuple[int, set[str]]:
    with psycopg.connect(dsn, password=password, autocommit=True) as conn:
        total = conn.execute("SELECT sum(balance), count(*) FROM platform_accounts").fetchone()
        assert total[1] == ACCOUNTS, f"{total[1]} accounts, expected {ACCOUNTS}"
        ids = {str(r[0]) for r in conn.execute("SELECT id FROM platform_transfers")}
        return int(total[0]), ids


class Workload:
    def __init__(self, dsn: str, password: str, workers: int = 4, seconds: float = 120, max_transfers: int = 50_000,
                 bound: float = 30.0, pause: float = 0.01):
        self.dsn, self.password = dsn, password
        self.workers, self.seconds, self.max_transfers = workers, seconds, max_transfers
        self.bound, self.pause = bound, pause
        self.acked: list[tuple[str, float]] = []  # (transfer id, time COMMIT returned)
        self.in_doubt: list[str] = []
        self.errors: list[tuple[float, str]] = []
        self.blocked: list[tuple[float, float, str]] = []  # (started, seconds, what)
        self.longest_request = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._inflight: dict[int, tuple[float, psycopg.Connection | None]] = {}
        self.started_at = 0.0

    # -- bookkeeping --------------------------------------------------------------------------------------------
    def _timed(self, what: str, started: float) -> None:
        took = time.monotonic() - started
        with self._lock:
            self.longest_request = max(self.longest_request, took)
            if took > self.bound:
                self.blocked.append((time.time() - took, took, what))

    def _error(self, exc: BaseException) -> None:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        with self._lock:
            self.errors.append((time.time(), text[:200]))

    # -- workers ------------------------------------------------------------------------------------------------
    def _worker(self, wid: int) -> None:
        rnd = random.Random(wid)
        conn = None
        deadline = time.monotonic() + self.seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                if len(self.acked) + len(self.in_doubt) >= self.max_transfers:
                    return
            if conn is None or conn.closed:
                t0 = time.monotonic()
                self._inflight[wid] = (t0, None)
                try:
                    conn = psycopg.connect(self.dsn, password=self.password, autocommit=True)
                except psycopg.Error as exc:
                    self._error(exc)
                    conn = None
                    self._timed("connect", t0)
                    time.sleep(0.2)
                    continue
                finally:
                    self._inflight.pop(wid, None)
                self._timed("connect", t0)
            src, dst = rnd.sample(range(1, ACCOUNTS + 1), 2)
            amount = rnd.randint(1, 100)
            tid = str(uuid.uuid4())
            committing = False
            t0 = time.monotonic()
            self._inflight[wid] = (t0, conn)
            try:
                conn.execute("BEGIN")
                # rows locked in id order, as a careful application does: no deadlocks between workers
                for acct, delta in sorted([(src, -amount), (dst, amount)]):
                    conn.execute("UPDATE platform_accounts SET balance = balance + %s WHERE id = %s", [delta, acct])
                conn.execute("INSERT INTO platform_transfers (id, src, dst, amount) VALUES (%s, %s, %s, %s)",
                             [tid, src, dst, amount])
                committing = True
                conn.execute("COMMIT")
                with self._lock:
                    self.acked.append((tid, time.time()))
            except psycopg.Error as exc:
                self._error(exc)
                if committing:
                    with self._lock:
                        self.in_doubt.append(tid)
                try:
                    conn.close()
                except psycopg.Error:
                    pass
                conn = None
                time.sleep(0.2)
            finally:
                self._inflight.pop(wid, None)
                self._timed("transfer", t0)
            time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def _watchdog(self) -> None:
        while any(t.is_alive() for t in self._threads):
            now = time.monotonic()
            for _wid, (t0, conn) in list(self._inflight.items()):
                if conn is not None and now - t0 > 2 * self.bound:
                    try:
                        conn.cancel_safe(timeout=5)
                    except (psycopg.Error, AttributeError):
                        pass
            time.sleep(1)

    # -- control ------------------------------------------------------------------------------------------------
    def start(self) -> Workload:
        self.started_at = time.time()
        self._threads = [threading.Thread(target=self._worker, args=(i,), daemon=True) for i in range(self.workers)]
        for t in self._threads:
            t.start()
        threading.Thread(target=self._watchdog, daemon=True).start()
        return self

    def wait_acked(self, n: int, seconds: float) -> None:
        """Block until n more transfers are acknowledged (instead of a fixed sleep before acting)."""
        with self._lock:
            target = len(self.acked) + n
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.acked) >= target:
                    return
            time.sleep(0.1)
        raise AssertionError(f"fewer than {n} transfers acknowledged in {seconds} s; errors: {self.errors[-3:]}")

    def stop(self, timeout: float = 120) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "workload workers did not stop"

    def write_gap(self, after: float = 0.0) -> float:
        """Longest time between two consecutive acknowledged commits (after `after`, epoch seconds)."""
        times = sorted(t for _tid, t in self.acked if t >= after)
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)
