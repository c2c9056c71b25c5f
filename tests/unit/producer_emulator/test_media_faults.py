"""Rules ``media_not_found_404`` and ``media_wrong_type``: the CDN refuses chosen songs."""

from __future__ import annotations

import httpx
from emulator_fixtures import api, emu, generate, server

from producer_emulator import EmulatorServer

__all__ = ["api", "emu", "server"]  # fixtures imported for pytest


def test_media_rules_hit_only_the_matching_songs_and_count_their_times(
    emu: EmulatorServer, api: httpx.Client
) -> None:
    emu.configure(
        faults={
            "rules": [
                {"when": {"title": "gone"}, "fault": "media_not_found_404", "path": "/media"},
                {"when": {"title": "odd"}, "fault": "media_wrong_type", "times": 1},
            ]
        }
    )
    gone, odd, fine = (generate(api, title=t) for t in ("gone", "odd", "fine"))
    assert httpx.get(gone["audio_url"]).status_code == 404
    assert httpx.get(gone["image_url"]).status_code == 404
    wrong = httpx.get(odd["audio_url"])
    assert (wrong.status_code, wrong.headers["content-type"]) == (200, "text/html; charset=utf-8")
    assert httpx.get(odd["audio_url"]).headers["content-type"] == "audio/wav"  # times: 1
    assert httpx.get(fine["audio_url"]).headers["content-type"] == "audio/wav"
