"""The emulator's admin side is the suite's measuring instrument: check it can be trusted.

Counters and the request log must count exactly the requests made since the last reset,
whatever earlier tests left running.
"""

from __future__ import annotations

import time

from producer_client import APITimeoutError, GenerateParams, Producer
from producer_emulator import EmulatorServer
from tests.contract.contract_support import TOKEN, client, emu, raises, server, statuses

__all__ = ["client", "emu", "server"]  # fixtures imported for pytest


def test_request_held_across_a_reset_leaves_no_trace(emu: EmulatorServer) -> None:
    """A blocking create still held when the emulator is reset is answered (500) by the
    reset; that answer belongs to the old run and must not show up in the new one."""
    emu.configure(time_scale=0.05)  # 2 s generations: still held at the reset
    with Producer(api_token=TOKEN, base_url=emu.url) as impatient:
        song = GenerateParams(prompt="held")
        raises(APITimeoutError, lambda: impatient.audios.create(song, timeout_s=0.05))
        emu.reset()
        time.sleep(0.05)  # let the server finish the answered request
        assert impatient.tasks.retrieve("after-reset") is None
    assert [entry["path"] for entry in emu.requests()] == ["/producer/tasks"]
    counters = emu.counters()
    assert counters["errors_by_code"] == {}
    assert counters["submissions_total"] == 0


def test_counters_count_what_the_client_sent(emu: EmulatorServer, client: Producer) -> None:
    submission = client.audios.submit(GenerateParams(prompt="counted"))
    client.tasks.retrieve(submission.task_id)
    client.lyrics.create(prompt="counted")
    counters = emu.counters()
    assert counters["submissions_by_endpoint"] == {"audios": 1, "lyrics": 1}
    assert counters["polls"] == 1
    assert counters["submissions_duplicated"] == 0
    assert statuses(emu, "/producer/audios") == [200]
    assert {entry["token_hash"] for entry in emu.requests()} != {None}
    assert all(TOKEN not in str(entry) for entry in emu.requests())


def test_same_request_twice_is_counted_as_duplicated(emu: EmulatorServer, client: Producer) -> None:
    """The per-fingerprint counter uses the client's own ``request_fingerprint``."""
    from producer_client import request_fingerprint

    params = GenerateParams(prompt="twice", seed="7")
    client.audios.submit(params)
    client.audios.submit(params)
    counters = emu.counters()
    assert counters["submissions_duplicated"] == 1
    assert counters["submissions_by_fingerprint"] == {request_fingerprint(params.to_body()): 2}
