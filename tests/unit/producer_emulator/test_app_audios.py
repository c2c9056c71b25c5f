"""POST /producer/audios: the three modes, item shapes, every action, validation."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from emulator_fixtures import (
    CallbackReceiver,
    api,
    emu,
    error_of,
    generate,
    retrieve,
    server,
    submit_async,
    wait_finished,
)

from producer_emulator import EmulatorServer

__all__ = ["api", "emu", "server"]  # fixtures imported for pytest

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
SONG_KEYS = {
    "id", "title", "image_url", "lyric", "audio_url", "video_url", "image_id", "topic",
    "seed", "sound", "created_at", "model", "progress", "state", "duration",
}  # fmt: skip


def audios(api: httpx.Client, **body: Any) -> httpx.Response:
    return api.post("/producer/audios", json=body)


# -- modes ----------------------------------------------------------------------------


def test_sync_mode_holds_until_done_and_returns_full_result(api: httpx.Client) -> None:
    started = time.monotonic()
    reply = audios(api, action="generate", model="FUZZ-2.0 Pro", prompt="A song for Christmas")
    assert time.monotonic() - started >= 0.07  # 40 s x 0.002
    body = reply.json()
    assert reply.status_code == 200
    assert body["success"] is True
    assert UUID.match(body["task_id"])
    assert UUID.match(body["trace_id"])
    [item] = body["data"]
    assert set(item) == SONG_KEYS
    assert UUID.match(item["id"])
    assert item["image_id"] == item["id"]
    assert item["title"] == "Untitled"
    assert item["sound"] == "A song for Christmas"
    assert item["model"] == "FUZZ-2.0 Pro"
    assert (item["state"], item["progress"]) == ("succeeded", "100%")
    assert item["video_url"] is None
    assert item["topic"] is None
    assert item["seed"].isdigit()
    assert 120.0 <= float(item["duration"]) <= 240.0
    assert isinstance(item["duration"], str)
    assert ISO.match(item["created_at"])
    assert item["audio_url"].startswith(api.base_url.join("/media/").__str__())
    assert item["audio_url"].endswith(f"{item['id']}.wav")
    assert item["image_url"].endswith(f"{item['id']}.png")


def test_async_mode_replies_at_once_with_task_id(api: httpx.Client) -> None:
    started = time.monotonic()
    reply = audios(api, action="generate", prompt="x", **{"async": True})
    assert time.monotonic() - started < 0.07
    assert reply.status_code == 200
    body = reply.json()
    assert set(body) == {"task_id", "trace_id"}
    record = wait_finished(api, body["task_id"])
    assert record["trace_id"] == body["trace_id"]
    assert record["response"]["success"] is True


def test_async_reply_can_carry_success(emu: EmulatorServer, api: httpx.Client) -> None:
    emu.configure(async_reply_success=True)
    body = audios(api, action="generate", prompt="x", **{"async": True}).json()
    assert body["success"] is True
    assert set(body) == {"success", "task_id", "trace_id"}


def test_callback_mode_replies_at_once_then_posts_the_result(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    with CallbackReceiver() as hook:
        reply = audios(api, action="generate", prompt="x", callback_url=hook.url)
        task_id = reply.json()["task_id"]
        assert set(reply.json()) == {"task_id", "trace_id"}
        [body] = hook.wait_for(1)
    assert body["success"] is True
    assert body["task_id"] == task_id
    assert body["trace_id"] == reply.json()["trace_id"]
    assert body["data"][0]["state"] == "succeeded"
    record = retrieve(api, task_id)
    assert record["request"]["callback_url"] == hook.url  # request kept verbatim
    assert emu.counters()["callbacks_sent"] == 1


def test_callback_receiver_errors_are_counted_not_retried(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    with CallbackReceiver(status=500) as hook:
        audios(api, action="generate", prompt="x", callback_url=hook.url)
        hook.wait_for(1)
        time.sleep(0.1)
        assert len(hook.bodies) == 1
    assert emu.counters()["callbacks_failed"] == 1


def test_unreachable_callback_is_counted_as_failed(emu: EmulatorServer, api: httpx.Client) -> None:
    audios(api, action="generate", prompt="x", callback_url="http://127.0.0.1:9/nothing")
    deadline = time.monotonic() + 5
    while emu.counters()["callbacks_failed"] < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emu.counters()["callbacks_failed"] == 1


# -- actions ----------------------------------------------------------------------------


def test_custom_generate_takes_title_from_first_lyric_line(api: httpx.Client) -> None:
    lyric = "[Verse]\nWoke up with the sun in my eyes\nNo clouds above"
    item = generate(api, custom=True, lyric=lyric, prompt="")
    assert item["title"] == "Woke up with the sun in my eyes"
    assert item["lyric"] == lyric
    assert item["sound"] == ""


def test_instrumental_song_has_instrumental_lyric(api: httpx.Client) -> None:
    assert generate(api, instrumental=True)["lyric"] == "[Instrumental]"


@pytest.mark.parametrize(
    ("action", "extra"),
    [
        ("cover", {"custom": True, "lyric": "[Verse]\nla", "title": "Cover"}),
        ("upload_cover", {"cover_strength": 0.5}),
        ("extend", {"continue_at": 3, "weirdness": 0.3, "sound_strength": 0.3}),
        ("upload_extend", {"continue_at": 10.5}),
        ("variation", {}),
        ("replace_section", {"replace_section_start": 10, "replace_section_end": 20}),
        ("upload_replace_section", {"replace_section_start": 0, "replace_section_end": 5}),
        ("swap_vocals", {"custom": True, "lyric": "[Verse]\nnew words"}),
        ("swap_instrumentals", {"prompt": "Happy", "weirdness": 0.6}),
    ],
)
def test_every_song_action_returns_one_new_song(
    api: httpx.Client, action: str, extra: dict[str, Any]
) -> None:
    source = generate(api, title="Source")
    reply = audios(api, action=action, audio_id=source["id"], **extra)
    assert reply.status_code == 200, reply.text
    [item] = reply.json()["data"]
    assert set(item) == SONG_KEYS
    assert item["id"] != source["id"]
    assert item["state"] == "succeeded"


def test_swap_instrumentals_appends_sound_swap_and_echoes_prompt(api: httpx.Client) -> None:
    source = generate(api, title="Extend")
    item = audios(api, action="swap_instrumentals", audio_id=source["id"], prompt="Happy").json()
    assert item["data"][0]["title"] == "Extend (Sound swap)"
    assert item["data"][0]["sound"] == "Happy"


def test_replace_section_keeps_the_duration_and_extend_changes_it(api: httpx.Client) -> None:
    source = generate(api)
    replaced = audios(
        api,
        action="replace_section",
        audio_id=source["id"],
        replace_section_start=5,
        replace_section_end=15,
    ).json()["data"][0]
    extended = audios(api, action="extend", audio_id=source["id"], continue_at=30).json()
    assert float(replaced["duration"]) == pytest.approx(float(source["duration"]))
    assert float(extended["data"][0]["duration"]) > 30


@pytest.mark.parametrize("action", ["stems", "all_stems"])
def test_stems_item_has_the_stems_shape(api: httpx.Client, action: str) -> None:
    source = generate(api, title="Woke up")
    body = audios(api, action=action, audio_id=source["id"]).json()
    [item] = body["data"]
    assert set(item) == {"title", "lyric", "stems_url", "model", "progress", "state"}
    assert item["title"] == "Woke up"
    assert (item["lyric"], item["model"]) == ("", "")
    assert item["stems_url"].endswith(f"/media/stems/{body['task_id']}.zip")


def test_same_seed_gives_same_media_seed_and_duration(api: httpx.Client) -> None:
    first = generate(api, seed="2450882164")
    second = generate(api, seed="2450882164")
    assert first["id"] != second["id"]
    assert first["seed"] == second["seed"] == "2450882164"
    assert first["duration"] == second["duration"]


def test_false_is_accepted_as_unset_in_numeric_and_flag_fields(api: httpx.Client) -> None:
    sdk_style = dict.fromkeys(
        [
            "weirdness",
            "continue_at",
            "sound_strength",
            "lyrics_strength",
            "replace_section_start",
            "replace_section_end",
            "cover_strength",
            "instrumental",
        ],
        False,
    )
    item = generate(api, **sdk_style)
    assert item["lyric"] != "[Instrumental]"
    source = item["id"]
    reply = audios(api, action="extend", audio_id=source, **sdk_style)
    assert reply.status_code == 200, reply.text


def test_unknown_keys_are_ignored(api: httpx.Client) -> None:
    item = generate(api, style="pop", swap_audio_id="x", vocal_gender="f", lyric_prompt="y")
    assert item["state"] == "succeeded"


def test_seed_may_be_a_number(api: httpx.Client) -> None:
    assert generate(api, seed=42)["seed"] == "42"


# -- validation -------------------------------------------------------------------------

INVALID: list[tuple[dict[str, Any], str]] = [
    ({"prompt": "x"}, "action is required."),
    ({"action": "dance", "prompt": "x"}, "action is invalid."),
    ({"action": "generate", "model": "FUZZ-9"}, "model is invalid."),
    ({"action": "generate", "prompt": "x" * 201}, "prompt must not exceed 200 characters."),
    ({"action": "generate", "lyrics_strength": 1.5}, "lyrics_strength must be between 0 and 1."),
    ({"action": "generate", "sound_strength": 0.1}, "sound_strength must be between 0.2 and 1."),
    ({"action": "generate", "cover_strength": 0.1}, "cover_strength must be between 0.2 and 1."),
    ({"action": "generate", "weirdness": -0.1}, "weirdness must be between 0 and 1."),
    ({"action": "generate", "weirdness": "high"}, "weirdness must be a number."),
    ({"action": "generate", "weirdness": True}, "weirdness must be a number."),
    ({"action": "generate", "instrumental": "yes"}, "instrumental must be a boolean."),
    ({"action": "generate", "prompt": 5}, "prompt must be a string."),
    ({"action": "generate", "callback_url": "ftp://x"}, "callback_url is invalid."),
    ({"action": "generate", "seed": 1.5}, "seed must be a string."),
    ({"action": "cover"}, "audio_id is required for action cover."),
    ({"action": "stems"}, "audio_id is required for action stems."),
    ({"action": "extend", "audio_id": "nope"}, "audio_id nope is not found."),
]


@pytest.mark.parametrize(("body", "message"), INVALID)
def test_invalid_requests_are_400_bad_request(
    emu: EmulatorServer, api: httpx.Client, body: dict[str, Any], message: str
) -> None:
    reply = audios(api, **body)
    assert error_of(reply) == (400, "bad_request", message)
    assert "success" not in reply.json()
    assert emu.counters()["tasks_total"] == 0


def test_prompt_of_exactly_200_characters_is_fine(api: httpx.Client) -> None:
    assert generate(api, prompt="x" * 200)["sound"] == "x" * 200


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"action": "extend", "continue_at": 10_000}, "continue_at is beyond the end of the song."),
        (
            {"action": "replace_section", "replace_section_start": 20, "replace_section_end": 20},
            "replace_section_start must be less than replace_section_end.",
        ),
        (
            {"action": "replace_section", "replace_section_start": 0, "replace_section_end": 999},
            "replace_section_end is beyond the end of the song.",
        ),
        (
            {"action": "replace_section", "replace_section_start": 3},
            "replace_section_start and replace_section_end are required for action "
            "replace_section.",
        ),
    ],
)
def test_checks_against_the_source_song(
    api: httpx.Client, extra: dict[str, Any], message: str
) -> None:
    source = generate(api)
    assert error_of(audios(api, audio_id=source["id"], **extra)) == (400, "bad_request", message)


def test_source_that_is_still_generating_is_rejected(api: httpx.Client) -> None:
    task_id = submit_async(api, action="generate", prompt="x")
    preview = None
    while preview is None:
        record = retrieve(api, task_id)
        preview = record.get("response", {}).get("data", [{}])[0].get("id")
        assert "finished_at" not in record
    reply = audios(api, action="extend", audio_id=preview)
    assert error_of(reply) == (400, "bad_request", f"audio_id {preview} is not ready yet.")


def test_strict_mode_requires_prompt_and_lyric(emu: EmulatorServer, api: httpx.Client) -> None:
    assert generate(api)["state"] == "succeeded"  # lenient by default: no lyric sent
    emu.configure(strict_required=True)
    assert error_of(audios(api, action="generate", prompt="x")) == (
        400,
        "bad_request",
        "lyric is required.",
    )
    assert generate(api, lyric="")["state"] == "succeeded"
