"""The public face: one ``__init__`` exporting the agreed names, sorted, all importable."""

from __future__ import annotations

import inspect

import pytest

import producer_client as pc
import producer_client.types as pc_types

INTERFACE = {
    "Producer",
    "AsyncProducer",
    "ACTIONS",
    "params_model_for",
    "parse_audio_params",
    "AudioParams",
    "GenerateParams",
    "CoverParams",
    "UploadCoverParams",
    "ExtendParams",
    "UploadExtendParams",
    "VariationParams",
    "ReplaceSectionParams",
    "UploadReplaceSectionParams",
    "SwapVocalsParams",
    "SwapInstrumentalsParams",
    "StemsParams",
    "AudioItem",
    "AudioResult",
    "ErrorInfo",
    "Submission",
    "TaskRecord",
    "TaskOutcome",
    "TaskBatch",
    "UploadResult",
    "LyricsResult",
    "WavResult",
    "VideoResult",
    "ProducerError",
    "ParamsValidationError",
    "FieldError",
    "APIStatusError",
    "BadRequestError",
    "NoTokenError",
    "TokenMismatchedError",
    "ApiNotImplementedError",
    "DisabledError",
    "InvalidTokenError",
    "TokenExpiredError",
    "UsedUpError",
    "ForbiddenError",
    "NoApiError",
    "RateLimitError",
    "InternalServerError",
    "GatewayTimeoutError",
    "APIConnectionError",
    "APITimeoutError",
    "MalformedResponseError",
    "WaitTimeoutError",
    "TaskFailedError",
    "request_fingerprint",
}


def _isort_key(name: str) -> tuple[int, str]:
    kind = 0 if name.isupper() else (1 if name[0].isupper() else 2)
    return kind, name


@pytest.mark.parametrize("module", [pc, pc_types])
def test_all_is_sorted_and_importable(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    assert names == sorted(names, key=_isort_key)
    assert len(set(names)) == len(names)
    for name in names:
        assert hasattr(module, name), name


def test_interface_names_exported() -> None:
    assert set(pc.__all__) >= INTERFACE


@pytest.mark.parametrize("cls", [pc.Producer, pc.AsyncProducer])
def test_client_constructor_is_keyword_only(cls: type) -> None:
    params = inspect.signature(cls).parameters
    assert list(params) == ["api_token", "base_url", "timeout_s", "max_retries", "transport"]
    assert all(p.kind is p.KEYWORD_ONLY for p in params.values())
    assert params["timeout_s"].default == 60.0
    assert params["max_retries"].default == 2
    assert params["base_url"].default == "https://api.acedata.cloud"


def test_both_clients_have_the_same_resources() -> None:
    sync = pc.Producer(api_token="t")
    try:
        for family in ("audios", "tasks", "upload", "lyrics", "wav", "videos"):
            resource = getattr(sync, family)
            async_cls = pc.AsyncProducer.__annotations__[family]
            assert type(resource).__name__ in async_cls
    finally:
        sync.close()


def test_async_methods_are_coroutines() -> None:
    from producer_client.resources.audios import AsyncAudios
    from producer_client.resources.tasks import AsyncTasks

    for method in (
        AsyncAudios.create,
        AsyncAudios.submit,
        AsyncTasks.retrieve,
        AsyncTasks.retrieve_batch,
        AsyncTasks.wait,
    ):
        assert inspect.iscoroutinefunction(method)
