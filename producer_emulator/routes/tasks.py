"""``POST /producer/tasks``: the task records of the calling token (CONTRACT §4).

``retrieve`` returns one record or ``{}`` for an unknown id (never 404).
``retrieve_batch`` with ``ids`` returns the known ones in the order asked;
without ``ids`` it lists the token's tasks newest first, filtered by
``type``/``created_at_min``/``created_at_max`` and paged by
``limit`` (default 20, at most 100) and ``offset``; ``count`` is the number
of matches before paging. A token never sees another token's tasks.
"""

from __future__ import annotations

from producer_emulator.records import render_record
from producer_emulator.routes.calls import Call, Reply
from producer_emulator.state import TaskRecord
from producer_emulator.validation import TasksQuery, parse_tasks


async def handle_tasks(call: Call) -> Reply:
    """Answer one poll."""
    state = call.state
    state.counters.polls += 1
    query = parse_tasks(call.body)
    if query.action == "retrieve":
        assert query.task_id is not None  # parse_tasks requires it for retrieve
        record = state.task_for(call.token, query.task_id)
        return 200, ({} if record is None else render_record(record, state.config))
    if query.ids is not None:
        found = (state.task_for(call.token, task_id) for task_id in query.ids)
        items = [render_record(r, state.config) for r in found if r is not None]
        return 200, {"items": items, "count": len(items)}
    matches = [r for r in state.tasks_of(call.token) if _selected(r, query)]
    page = matches[query.offset : query.offset + query.limit]
    return 200, {"items": [render_record(r, state.config) for r in page], "count": len(matches)}


def _selected(record: TaskRecord, query: TasksQuery) -> bool:
    if query.task_type is not None and record.type != query.task_type:
        return False
    if query.created_at_min is not None and record.created_at < query.created_at_min:
        return False
    return query.created_at_max is None or record.created_at <= query.created_at_max
