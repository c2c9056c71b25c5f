"""Steps through a real Celery worker against the emulator over HTTP."""

from __future__ import annotations

import io
import wave
import zipfile
from pathlib import Path

import pytest
from celery import chain
from celery.result import AsyncResult

from tests.integration.fleet import fleet
from workers.tasks.audios import extend, generate, stems


def test_generate_extend_stems_chain_returns_the_stems_result(
    redis_url: str, tmp_path: Path
) -> None:
    with fleet(redis_url, tmp_path) as f:
        result = chain(
            generate.s(params={"prompt": "rain on a tin roof", "seed": "11"}),
            extend.s(params={"prompt": "and then the sun"}),
            stems.s(),
        ).apply_async()
        stems_result = result.get(timeout=60)
        extend_result = result.parent.get(timeout=5)
        generate_result = result.parent.parent.get(timeout=5)
        counters = f.counters

    assert stems_result["action"] == "stems"
    assert extend_result["params"]["audio_id"] == generate_result["audio_id"]
    assert extend_result["params"]["continue_at"] == pytest.approx(generate_result["duration"])
    assert stems_result["params"]["audio_id"] == extend_result["audio_id"]
    kinds = {a["kind"] for a in stems_result["artifacts"]}
    assert {"stems", "metadata"} <= kinds
    stems_file = next(a for a in stems_result["artifacts"] if a["kind"] == "stems")
    with zipfile.ZipFile(tmp_path / stems_file["key"]) as zf:
        assert {"vocals.wav", "instrumental.wav"} <= set(zf.namelist())
    audio = next(a for a in generate_result["artifacts"] if a["kind"] == "audio")
    data = (tmp_path / audio["key"]).read_bytes()
    import hashlib

    assert hashlib.sha256(data).hexdigest() == audio["sha256"] and len(data) == audio["size"]
    with wave.open(io.BytesIO(data)) as w:
        assert w.getnframes() / w.getframerate() == pytest.approx(
            generate_result["duration"], abs=0.01
        )
    assert counters["submissions_total"] == 3
    assert all(n == 1 for n in counters["submissions_by_fingerprint"].values())
    assert AsyncResult(result.parent.parent.id).state == "SUCCESS"
