"""Shared pieces of the contract suite: the real client against the real emulator.

Everything here talks HTTP over loopback: the emulator runs in a uvicorn thread on a
port-0 socket, the callback receiver is an ``http.server`` thread, media are fetched with
httpx. A plain module with a distinctive name (no conftest): test modules import the
fixtures they use and list them in ``__all__`` so linters see them used.
"""

from __future__ import annotations

import io
import json
import threading
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from producer_client import (
    APIStatusError,
    AsyncProducer,
    AudioItem,
    GenerateParams,
    Producer,
    ProducerError,
    TaskOutcome,
    TaskRecord,
)
from producer_emulator import EmulatorConfig, EmulatorServer

TOKEN = "sk-contract-5e1f0c9a7b3d-SECRET"
OTHER_TOKEN = "sk-contract-other-2b8e-SECRET"
EXAMPLES_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "producer_api" / "examples"
SAMPLE_RATE = 8000
WAIT = {"interval_s": 0.01, "timeout_s": 10.0}
"""Keyword arguments of ``tasks.wait`` for this fast emulator."""

E = TypeVar("E", bound=BaseException)


def fast_config(**changes: Any) -> EmulatorConfig:
    """A seeded emulator where a generation takes 80 ms and songs are 20-30 s long.

    Rate limits and the in-flight cap are off; tests that exercise them turn them on.
    """
    settings: dict[str, Any] = {
        "tokens": [TOKEN, OTHER_TOKEN],
        "generation_s": 40.0,
        "generation_jitter_s": 0.0,
        "time_scale": 0.002,
        "song_low_s": 20.0,
        "song_high_s": 30.0,
        "poll_rate_per_s": None,
        "max_concurrency": None,
        "sample_rate": SAMPLE_RATE,
        "preview_render_s": 2.0,
        "seed": 20260823,
    }
    settings.update(changes)
    return EmulatorConfig(**settings)


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    """One emulator per test module, never reset by this fixture."""
    with EmulatorServer(fast_config()) as emu:
        yield emu


@pytest.fixture
def emu(server: EmulatorServer) -> EmulatorServer:
    """The module's emulator, reset (state, counters, config) before the test."""
    server.reset()
    return server


@pytest.fixture
def client(server: EmulatorServer) -> Iterator[Producer]:
    """A blocking client on the emulator with the default retry policy."""
    with Producer(api_token=TOKEN, base_url=server.url) as producer:
        yield producer


@pytest.fixture
async def aclient(server: EmulatorServer) -> AsyncIterator[AsyncProducer]:
    """An async client on the emulator with the default retry policy."""
    async with AsyncProducer(api_token=TOKEN, base_url=server.url) as producer:
        yield producer


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    """A running webhook receiver."""
    with CallbackReceiver() as hook:
        yield hook


# -- songs and records ---------------------------------------------------------------


def make_song(client: Producer, **params: Any) -> AudioItem:
    """A finished song from a blocking ``generate`` (prompt mode unless told otherwise)."""
    settings: dict[str, Any] = {"prompt": "a contract test song", **params}
    result = client.audios.create(GenerateParams(**settings))
    assert result.success is True
    return result.data[0]


def finished(client: Producer, task_id: str) -> TaskRecord:
    """Wait for ``task_id`` and check it succeeded."""
    record = client.tasks.wait(task_id, **WAIT)
    assert record.outcome is TaskOutcome.SUCCEEDED, record.response
    return record


def requests_to(emu: EmulatorServer, path: str) -> list[dict[str, Any]]:
    """The emulator's request log entries for ``path``, oldest first."""
    return [entry for entry in emu.requests() if entry["path"] == path]


def statuses(emu: EmulatorServer, path: str) -> list[int]:
    """HTTP statuses the emulator answered on ``path``, oldest first."""
    return [entry["status"] for entry in requests_to(emu, path)]


def load_example(name: str) -> dict[str, Any]:
    """One documented payload file of ``shared/producer_api/examples``."""
    data: dict[str, Any] = json.loads((EXAMPLES_DIR / name).read_text(encoding="utf-8"))
    return data


# -- media -----------------------------------------------------------------------------


def fetch(url: str) -> httpx.Response:
    """GET a media URL (the emulator's CDN side needs no token); must answer 200."""
    reply = httpx.get(url, timeout=10.0, trust_env=False)
    assert reply.status_code == 200, (url, reply.status_code)
    return reply


@dataclass(frozen=True)
class Wav:
    """A decoded 16-bit mono WAV."""

    frames: int
    rate: int
    pcm: bytes

    @property
    def seconds(self) -> float:
        """Length in seconds."""
        return self.frames / self.rate

    def head(self, seconds: float) -> bytes:
        """The PCM bytes of the first ``seconds``."""
        return self.pcm[: 2 * round(seconds * self.rate)]


def decode_wav(payload: bytes) -> Wav:
    """Decode with the stdlib ``wave`` module (so the file is a real WAV)."""
    with wave.open(io.BytesIO(payload), "rb") as reader:
        assert reader.getnchannels() == 1
        assert reader.getsampwidth() == 2
        frames = reader.getnframes()
        return Wav(frames, reader.getframerate(), reader.readframes(frames))


def assert_length_matches(wav: Wav, duration: float | None) -> None:
    """The WAV lasts the item's ``duration`` (to one sample)."""
    assert duration is not None
    assert abs(wav.seconds - duration) <= 1.0 / wav.rate


# -- errors ----------------------------------------------------------------------------


def assert_no_token(*things: object) -> None:
    """Neither token appears in the ``str``/``repr`` of anything given."""
    for thing in things:
        for text in (str(thing), repr(thing)):
            assert TOKEN not in text, text
            assert OTHER_TOKEN not in text, text


def assert_clean(exc: BaseException) -> None:
    """An exception, its message, args and any body it carries hold no token."""
    parts: list[object] = [exc, exc.args, getattr(exc, "message", "")]
    if isinstance(exc, ProducerError) and hasattr(exc, "body"):
        parts.append(json.dumps(exc.body, default=str))
    assert_no_token(*parts)


def raises(expected: type[E], call: Callable[[], object]) -> E:
    """Run ``call``, demand exactly ``expected`` (not a subclass), check it is clean."""
    with pytest.raises(expected) as info:
        call()
    assert type(info.value) is expected, type(info.value)
    assert_clean(info.value)
    return info.value


def raises_any(expected: type[ProducerError], call: Callable[[], object]) -> APIStatusError:
    """Run ``call``, demand an API status error that is an ``expected``, check it is clean."""
    with pytest.raises(expected) as info:
        call()
    assert isinstance(info.value, APIStatusError), type(info.value)
    assert_clean(info.value)
    return info.value


async def araises(expected: type[E], call: Callable[[], Any]) -> E:
    """Async twin of :func:`raises`: ``call()`` returns the awaitable to run."""
    with pytest.raises(expected) as info:
        await call()
    assert type(info.value) is expected, type(info.value)
    assert_clean(info.value)
    return info.value


class StripAuthorization(httpx.BaseTransport):
    """Real HTTP, minus the ``authorization`` header the client always adds.

    The client refuses an empty token, so this is how a contract test reaches the
    server's ``no_token`` reply through the real client.
    """

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` without its bearer token."""
        del request.headers["authorization"]
        return self._inner.handle_request(request)

    def close(self) -> None:
        """Close the pool."""
        self._inner.close()


# -- callbacks -------------------------------------------------------------------------


class CallbackReceiver:
    """A webhook receiver on ``127.0.0.1:<free port>`` recording every JSON body POSTed."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/hooks/unguessable-7d2c"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                receiver._record(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Keep test output quiet."""

        return Handler

    def _record(self, body: dict[str, Any]) -> None:
        with self._changed:
            self.bodies.append(body)
            self._changed.notify_all()

    def body_for(self, task_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """The first body about ``task_id``, waiting for it to arrive."""

        def found() -> list[dict[str, Any]]:
            return [body for body in self.bodies if body.get("task_id") == task_id]

        with self._changed:
            if not self._changed.wait_for(found, timeout_s):
                raise AssertionError(f"no callback for {task_id} within {timeout_s}s")
            return found()[0]

    def __enter__(self) -> CallbackReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
