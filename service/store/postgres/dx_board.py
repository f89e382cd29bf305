"""DX's pace, its 429 hold and the pause, in one row every replica shares (``dx_gate``).

DX limits the relay's token, not each pod, so a per-process bucket would let N replicas
send N times the configured rate. The bucket lives in the row instead: each request's
token is one statement that locks the row, refills it from the elapsed time and takes a
token if one is there, on the database's clock (the one clock the replicas share). A
429's ``Retry-After`` and a refused token (the pause) are written there too, so they hold
every replica back, not only the one DX answered.
"""

from __future__ import annotations

from collections.abc import Callable

from service.store import SharedPause
from service.store.postgres.engine import PostgresEngine
from service.store.postgres.schema import DX_GATE_CHANNEL, WORK_CHANNEL, Conn

_NOW = "extract(epoch FROM clock_timestamp())"
#: Sent with a pause's start and end: every replica reads the pause again (its gate's
#: channel) and its worker wakes (the work channel) to act on it now.
_TELL = f"SELECT pg_notify('{DX_GATE_CHANNEL}', ''), pg_notify('{WORK_CHANNEL}', '')"
#: The row, locked (so it is the newest version), refilled; a token taken when there is
#: one and no hold. Returns 0 (taken) or how long to wait ($1 rate, $2 burst).
_TAKE = (
    f"WITH g AS (SELECT tokens, stamp, hold_until, {_NOW} AS t FROM dx_gate WHERE id = 1"  # noqa: S608
    " FOR UPDATE), f AS (SELECT t, hold_until,"
    " least($2::float8, tokens + greatest(0, t - stamp) * $1::float8) AS avail,"
    " greatest(stamp, t) AS stamp FROM g)"
    " UPDATE dx_gate d SET stamp = f.stamp, tokens = CASE WHEN f.hold_until <= f.t"
    " AND f.avail >= 1 THEN f.avail - 1 ELSE f.avail END FROM f WHERE d.id = 1"
    " RETURNING CASE WHEN f.hold_until > f.t THEN f.hold_until - f.t"
    " WHEN f.avail >= 1 THEN 0 ELSE (1 - f.avail) / $1::float8 END"
)


class PostgresDXBoard:
    """``DXBoard`` in the ``dx_gate`` row of ``engine``'s database."""

    def __init__(self, engine: PostgresEngine) -> None:
        self._engine = engine

    def watch(self, changed: Callable[[], None]) -> None:
        self._engine.watch(DX_GATE_CHANNEL, lambda _: changed())

    async def take(self, rate: float, burst: float) -> float:
        wait = await self._engine.run(lambda conn: conn.fetchval(_TAKE, rate, burst), "pace")
        return float(wait)

    async def hold(self, seconds: float) -> None:
        await self._engine.run(
            lambda conn: conn.execute(
                f"UPDATE dx_gate SET hold_until = greatest(hold_until, {_NOW} + $1)"  # noqa: S608
                " WHERE id = 1",
                seconds,
            ),
            "pace",
        )

    async def pause(self, code: str, message: str, length: Callable[[int], float]) -> float:
        async def job(conn: Conn) -> float:
            row = await conn.fetchrow(
                f"SELECT pause_until - {_NOW} AS left, pause_code, pauses_in_a_row"  # noqa: S608
                " FROM dx_gate WHERE id = 1 FOR UPDATE"
            )
            assert row is not None  # migration 2 made the one row
            if row["left"] > 0 and row["pause_code"] == code:
                # Another replica's request was refused the same way meanwhile: the pause
                # in force stands, not doubled once per replica.
                return float(row["left"])
            seconds = length(row["pauses_in_a_row"])
            await conn.execute(
                f"UPDATE dx_gate SET pause_until = {_NOW} + $1, pause_code = $2,"  # noqa: S608
                " pause_message = $3, pauses_in_a_row = pauses_in_a_row + 1 WHERE id = 1",
                seconds,
                code,
                message,
            )
            await conn.execute(_TELL)
            return seconds

        return await self._engine.transaction(job, "pause")

    async def resume(self) -> None:
        async def job(conn: Conn) -> None:
            ended = await conn.execute(
                "UPDATE dx_gate SET pause_until = 0, pause_code = NULL, pause_message = NULL,"
                " pauses_in_a_row = 0 WHERE id = 1 AND pauses_in_a_row > 0"
            )
            if ended.split()[-1] != "0":
                await conn.execute(_TELL)

        await self._engine.transaction(job, "pause")

    async def paused(self) -> SharedPause:
        row = await self._engine.run(
            lambda conn: conn.fetchrow(
                f"SELECT greatest(0, pause_until - {_NOW}) AS left, pause_code,"  # noqa: S608
                " pause_message, pauses_in_a_row FROM dx_gate WHERE id = 1"
            ),
            "read",
        )
        assert row is not None  # migration 2 made the one row
        return SharedPause(
            seconds_left=float(row["left"]),
            code=row["pause_code"],
            message=row["pause_message"],
            in_a_row=row["pauses_in_a_row"],
        )
