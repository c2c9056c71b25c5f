"""Batches in Redis: the record, the rows and their states, and the atomic moves between them.

Layout (prefix :data:`~pipelines.constants.BATCH_PREFIX`; ``{id}`` is the batch id in
braces, so one batch's keys share a Redis Cluster slot)::

    producer:batch:{id}            hash    the record: status, pipeline, spec, counters
                                           (pending running done failed cancelled),
                                           cursor, admissions, created/started/finished_at
    producer:batch:{id}:rows       hash    row -> JSON list of cells (column order)
    producer:batch:{id}:state      string  one byte per row: p r d f c x (_batch_common.lua)
    producer:batch:{id}:requeue    list    rows to feed before the cursor's
    producer:batch:{id}:running    hash    row -> {"row", "attempt", "at"} of admitted rows
    producer:batch:{id}:errors     hash    row -> {"step", "code", "message"}
    producer:batch:{id}:rate       hash    epoch minute -> rows finished in it
    producer:batch:{id}:deferred   zset    waiting rows -> when to try them again
    producer:batch:_index          zset    batch id -> created_at
    producer:batch:_active         list    batches with rows to feed, in rotation
    producer:batch:_window         zset    "<id>/<row>" -> admitted_at, every batch
    producer:batch:_config         hash    "window": runtime override of the window

Every move of a row (admit, finish, requeue, resume, cancel) is one Lua script over
these keys (``scripts/batch_*.lua``), so any number of feeders and workers agree and the
counters always equal the state string.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from pipelines.batches.admission import Admission, NotAdmitted, decode_admit
from pipelines.constants import (
    BATCH_ACTIVE_KEY,
    BATCH_CONFIG_KEY,
    BATCH_INDEX_KEY,
    BATCH_PAUSE_RETRY_S,
    BATCH_PREFIX,
    BATCH_WINDOW_KEY,
)
from pipelines.specs.spec import PipelineSpec
from workers._redis import register_scripts

STATES = ("pending", "running", "done", "failed", "cancelled")
"""Row states, as counted in the record."""

FINAL_STATUSES = frozenset({"finished", "cancelled"})
"""Batch statuses after which nothing runs."""

_PARTS = ("state", "rows", "requeue", "running", "errors", "rate", "deferred")
_SCAN_CHUNK = 4096
_SCAN_BUDGET = 65536


def record_key(batch_id: str) -> str:
    """The record hash of a batch."""
    return f"{BATCH_PREFIX}{{{batch_id}}}"


def part_key(batch_id: str, part: str) -> str:
    """One of a batch's other keys (``rows``, ``state`` ...)."""
    return f"{record_key(batch_id)}:{part}"


def batch_keys(batch_id: str) -> list[str]:
    """Every key of one batch (not the fleet-wide ones)."""
    return [record_key(batch_id), *(part_key(batch_id, p) for p in _PARTS)]


def _script_keys(batch_id: str) -> list[str]:
    """KEYS of every batch script, in the order _batch_common.lua names them."""
    head = [record_key(batch_id), *(part_key(batch_id, p) for p in _PARTS[:-1])]
    return [*head, BATCH_ACTIVE_KEY, BATCH_WINDOW_KEY, part_key(batch_id, "deferred")]


def text(value: Any) -> str:
    """A Redis reply as str."""
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class BatchInfo:
    """What feeding a batch needs from its record and never changes (cached per id).

    A batch id keeps its pipeline and rows for life (another CSV under the same id is
    refused), so this is read once; the spend cap, which may change, is not here.
    """

    spec: PipelineSpec
    columns: list[str]
    plan: list[tuple[str, str]]
    row_cost: float

    @classmethod
    def from_record(cls, record: Mapping[str, str]) -> BatchInfo:
        """Parse a batch record (see the layout above)."""
        return cls(
            spec=PipelineSpec.model_validate_json(record["spec"]),
            columns=json.loads(record["columns"]),
            plan=[(str(s), str(a)) for s, a in json.loads(record["plan"])],
            row_cost=float(record.get("row_cost", "0")),
        )


@dataclass(frozen=True)
class Held:
    """An admission taken out of "running" (by a finish, resume, cancel or refusal)."""

    row: int
    attempt: int
    admitted_at: float

    @property
    def spend_key(self) -> str:
        """The spend hold it reserved."""
        return f"row-{self.row}/attempt-{self.attempt}"


def _held(raw: Any) -> Held | None:
    if not raw:
        return None
    data = json.loads(text(raw))
    return Held(int(data["row"]), int(data["attempt"]), float(data["at"]))


class BatchState:
    """The atomic operations on batches, over a synchronous redis-py client."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        # Every batch script starts with the shared helpers of _batch_common.lua.
        scripts = register_scripts(client, "pipelines.batches", prelude="_batch_common")
        self._admit = scripts["batch_admit"]
        self._finish = scripts["batch_finish"]
        self._rows = scripts["batch_rows"]

    def record(self, batch_id: str) -> dict[str, str] | None:
        """The record of a batch as text, or None if there is none."""
        raw = self.redis.hgetall(record_key(batch_id))
        return {text(k): text(v) for k, v in raw.items()} if raw else None

    def batch_ids(self, *, newest_first: bool = True, limit: int = 50) -> list[str]:
        """Known batch ids by creation time."""
        ids = self.redis.zrange(BATCH_INDEX_KEY, 0, limit - 1, desc=newest_first)
        return [text(i) for i in ids]

    def active(self) -> list[str]:
        """Batches with rows to feed, in rotation order."""
        return [text(i) for i in self.redis.lrange(BATCH_ACTIVE_KEY, 0, -1)]

    def active_count(self) -> int:
        """How many batches have rows to feed."""
        return int(self.redis.llen(BATCH_ACTIVE_KEY))

    def rotate(self) -> str | None:
        """The next batch in the rotation (it moves to the back): round-robin for all feeders."""
        found = self.redis.lmove(BATCH_ACTIVE_KEY, BATCH_ACTIVE_KEY, "LEFT", "RIGHT")
        return None if found is None else text(found)

    def unrotate(self) -> None:
        """Undo :meth:`rotate`: the batch at the back goes back to the front."""
        self.redis.lmove(BATCH_ACTIVE_KEY, BATCH_ACTIVE_KEY, "RIGHT", "LEFT")

    def in_window(self) -> int:
        """Admitted-but-unfinished rows of every batch."""
        return int(self.redis.zcard(BATCH_WINDOW_KEY))

    def window_override(self) -> int | None:
        """The window set at runtime (``feeder --window``), if any."""
        raw = self.redis.hget(BATCH_CONFIG_KEY, "window")
        return None if raw is None else int(text(raw))

    def set_window(self, window: int | None) -> None:
        """Set (or with None, clear) the runtime window for every feeder."""
        if window is None:
            self.redis.hdel(BATCH_CONFIG_KEY, "window")
        else:
            self.redis.hset(BATCH_CONFIG_KEY, "window", str(window))

    def admit(self, batch_id: str, window: int) -> Admission | NotAdmitted:
        """Admit the next row of ``batch_id``: an :class:`Admission`, or why not."""
        reply = self._admit(
            keys=_script_keys(batch_id), args=[batch_id, window, _SCAN_CHUNK, _SCAN_BUDGET]
        )
        return decode_admit(batch_id, reply)

    def finish(
        self, batch_id: str, row: int, *, failure: Mapping[str, str] | None = None
    ) -> tuple[bool, Held | None]:
        """Record row ``row`` done (or failed with ``failure``); once only.

        Returns (recorded, the admission it ended, if it was running).
        """
        args: list[str | int] = [
            batch_id,
            row,
            "f" if failure else "d",
            json.dumps(failure) if failure else "",
        ]
        reply = self._finish(keys=_script_keys(batch_id), args=args)
        if int(reply[0]) != 1:
            return False, None
        return True, _held(reply[2])

    def unadmit(
        self, batch_id: str, row: int, reason: str, retry_s: float = BATCH_PAUSE_RETRY_S
    ) -> Held | None:
        """Give an admitted row back (its spend was refused) and pause the batch."""
        _, held = self._run_rows(batch_id, "unadmit", row, reason, retry_s)
        return held[0] if held else None

    def defer(self, batch_id: str, row: int, seconds: float) -> Held | None:
        """Put an admitted row back to wait ``seconds`` (an older canvas of it is in flight)."""
        _, held = self._run_rows(batch_id, "defer", row, seconds)
        return held[0] if held else None

    def retry(self, batch_id: str, rows: list[int]) -> str:
        """Failed ``rows`` become pending again; returns the batch status."""
        return self._run_rows(batch_id, "retry", *rows)[0]

    def resume(self, batch_id: str) -> tuple[str, list[Held]]:
        """Running and abandoned rows become pending, feeding restarts; (status, ended)."""
        return self._run_rows(batch_id, "resume")

    def cancel(self, batch_id: str, *, abandon: bool) -> tuple[str, list[Held]]:
        """Stop feeding; with ``abandon`` running rows are cancelled now. (status, ended)."""
        return self._run_rows(batch_id, "cancel", "1" if abandon else "0")

    def _run_rows(self, batch_id: str, op: str, *args: Any) -> tuple[str, list[Held]]:
        reply = self._rows(keys=_script_keys(batch_id), args=[batch_id, op, *args])
        held = [h for h in map(_held, reply[1:]) if h is not None]
        return text(reply[0]), held

    def states(self, batch_id: str) -> bytes:
        """The state string (index = row number; byte 0 unused)."""
        raw = self.redis.get(part_key(batch_id, "state"))
        return raw.encode() if isinstance(raw, str) else bytes(raw or b"")

    def rows_in(self, batch_id: str, letter: str) -> list[int]:
        """Row numbers whose state byte is ``letter`` (``b"f"``: the failed rows ...)."""
        data = self.states(batch_id)
        code = ord(letter)
        return [i for i, byte in enumerate(data) if byte == code and i > 0]

    def cells(self, batch_id: str, rows: list[int]) -> dict[int, list[str]]:
        """The cells of ``rows``, by row."""
        if not rows:
            return {}
        raw = self.redis.hmget(part_key(batch_id, "rows"), [str(r) for r in rows])
        return {r: json.loads(text(v)) for r, v in zip(rows, raw, strict=True) if v is not None}

    def errors(self, batch_id: str) -> dict[int, dict[str, str]]:
        """Failed rows' recorded failures, by row."""
        raw = self.redis.hgetall(part_key(batch_id, "errors"))
        return {int(text(k)): json.loads(text(v)) for k, v in raw.items()}

    def running(self, batch_id: str) -> list[Held]:
        """The admissions of the rows running now."""
        raw = self.redis.hgetall(part_key(batch_id, "running"))
        return [h for h in map(_held, raw.values()) if h is not None]

    def finished_per_minute(self, batch_id: str) -> dict[int, int]:
        """Rows finished per epoch minute."""
        raw = self.redis.hgetall(part_key(batch_id, "rate"))
        return {int(text(k)): int(text(v)) for k, v in raw.items()}
