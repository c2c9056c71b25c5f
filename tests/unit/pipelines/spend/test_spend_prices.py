"""The price table (built-in, overridden by a file, errors) and dry-run estimates."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.specs.canvas import calls_per_row
from pipelines.specs.loader import get_pipeline, load_pipelines
from pipelines.specs.spec import PipelineSpec, StepSpec
from pipelines.spend.estimate import estimate
from pipelines.spend.prices import (
    ACTIONS,
    PriceTable,
    PriceTableError,
    UnknownActionError,
    parse_amount,
)
from producer_client import ACTIONS as AUDIO_ACTIONS
from workers.operations.actions import QUICK_ACTIONS
from workers.settings import Settings, get_settings

REMIX = get_pipeline("generate-variations")  # generate, variation x 2, stems
LYRICS_SONG = get_pipeline("lyrics-song")  # lyrics, generate


@pytest.fixture(autouse=True)
def _no_prices_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PRODUCER_PRICES_FILE", raising=False)
    get_settings.cache_clear()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "prices.toml"
    path.write_text(text)
    return path


def test_built_in_table_has_the_withdrawn_vendor_prices() -> None:
    table = PriceTable.load()
    assert table.currency == "USD"
    assert table.usd_per_credit == 0.095215
    assert set(table.prices) == set(ACTIONS) and len(ACTIONS) == 15
    published = {
        "generate": 0.08,
        "extend": 0.05,
        "cover": 0.10,
        "swap_vocals": 0.05,
        "swap_instrumentals": 0.05,
        "lyrics": 0.005,
        "upload": 0.01,
    }
    assert {a: table.call_cost(a) for a in published} == published


def test_guessed_prices_are_marked_in_the_file() -> None:
    text = (Path(__file__).resolve().parents[4] / "pipelines" / "spend" / "prices.toml").read_text()
    for action in (
        "upload_cover",
        "upload_extend",
        "variation",
        "replace_section",
        "upload_replace_section",
        "stems",
        "wav",
        "videos",
    ):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"{action} ="))
        assert "GUESS" in line, action


def test_a_file_overrides_some_prices(tmp_path: Path) -> None:
    table = PriceTable.load(write(tmp_path, "[prices]\ngenerate = 0.12\nstems = 0\n"))
    assert table.call_cost("generate") == 0.12
    assert table.call_cost("stems") == 0.0
    assert table.call_cost("extend") == 0.05


def test_the_environment_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODUCER_PRICES_FILE", str(write(tmp_path, "[prices]\nwav = 0.02\n")))
    get_settings.cache_clear()
    # Read once at the edge (Settings) and passed down; the table never reads the environment.
    assert PriceTable.load(get_settings().prices_file).call_cost("wav") == 0.02
    assert PriceTable.load().call_cost("wav") != 0.02
    get_settings.cache_clear()


def test_a_file_in_credits_converts_the_defaults(tmp_path: Path) -> None:
    table = PriceTable.load(write(tmp_path, 'currency = "credits"\n[prices]\nlyrics = 1\n'))
    assert table.currency == "credits"
    assert table.call_cost("lyrics") == 1
    assert table.call_cost("generate") == pytest.approx(0.08 / 0.095215)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[prices]\ncustom = 0.08\n", "unknown actions ['custom']"),
        ("[prices]\ngenerate = -1\n", "finite and >= 0"),
        ('currency = "EUR"\n', "unknown currency 'EUR'"),
        ("usd_per_credit = 0\n", "usd_per_credit"),
        ("surprise = 1\n", "surprise"),
        ("[prices\n", "not valid TOML"),
    ],
)
def test_a_bad_file_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PriceTableError, match=r"prices\.toml") as info:
        PriceTable.load(path)
    assert message in str(info.value)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PriceTableError, match=r"nope\.toml"):
        PriceTable.load(tmp_path / "nope.toml")


def test_a_table_must_price_every_action() -> None:
    with pytest.raises(ValueError, match="no price for actions"):
        PriceTable(prices={"generate": 0.08})


def test_an_unknown_action_has_no_price() -> None:
    with pytest.raises(UnknownActionError, match="unknown action 'all_stems'"):
        PriceTable.load().call_cost("all_stems")


def test_actions_are_the_apis() -> None:
    assert set(ACTIONS) == set(AUDIO_ACTIONS) | set(QUICK_ACTIONS)


def test_row_cost_sums_steps_times_repeat_exactly() -> None:
    assert PriceTable.load().row_cost(REMIX) == 0.29  # 0.08 + 2 x 0.08 + 0.05
    assert PriceTable.load().row_cost(LYRICS_SONG) == 0.085


@pytest.mark.parametrize("name", sorted(load_pipelines()))
def test_estimates_count_the_calls_the_canvas_makes(name: str) -> None:
    spec = load_pipelines()[name]
    est = estimate(spec, 7, PriceTable.load())
    assert est.calls_per_action == {a: n * 7 for a, n in calls_per_row(spec).items()}
    assert est.cost == pytest.approx(7 * PriceTable.load().row_cost(spec))


def test_currency_conversion_both_ways() -> None:
    table = PriceTable.load()
    assert table.to_currency(0.095215, "credits") == pytest.approx(1.0)
    assert table.to_currency(2.0, "usd") == 2.0
    assert table.from_currency(10, "credits") == pytest.approx(0.95215)
    with pytest.raises(PriceTableError, match="unknown currency"):
        table.to_currency(1.0, "EUR")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("25", (25.0, "USD")),
        ("25 USD", (25.0, "USD")),
        ("$2.5", (2.5, "USD")),
        ("250 credits", (250.0, "credits")),
        (" 1 credit ", (1.0, "credits")),
    ],
)
def test_parse_amount(text: str, expected: tuple[float, str]) -> None:
    assert parse_amount(text, "USD") == expected


@pytest.mark.parametrize("text", ["", "ten", "-1", "5 EUR", "$5 credits"])
def test_parse_amount_refuses_junk(text: str) -> None:
    with pytest.raises(PriceTableError):
        parse_amount(text, "USD")


def test_parse_cap_converts_to_the_table_currency() -> None:
    table = PriceTable.load()
    assert table.parse_cap(None) is None
    assert table.parse_cap(3) == 3.0
    assert table.parse_cap("100 credits") == pytest.approx(9.5215)


@pytest.mark.parametrize("value", ["25", "25 USD", "$25", "250 credits", "0.5"])
def test_the_global_cap_setting_takes_what_parse_cap_reads(value: str) -> None:
    cap = Settings(global_spend_cap=value).global_spend_cap
    assert cap is not None and PriceTable.load().parse_cap(cap) is not None


def test_the_global_cap_setting_refuses_junk() -> None:
    with pytest.raises(ValueError, match="global_spend_cap"):
        Settings(global_spend_cap="lots")


def test_estimate_figures() -> None:
    est = estimate(REMIX, 100, PriceTable.load())
    assert est.rows == 100
    assert est.calls_per_step == {"generate": 100, "variation": 200, "stems": 100}
    assert est.calls_per_action == {"generate": 100, "variation": 200, "stems": 100}
    assert est.calls == 400
    assert est.cost == 29.0
    assert est.currency == "USD"
    assert est.table_rows() == [
        ("generate", "generate", "100", "0.08", "8"),
        ("variation", "variation", "200", "0.08", "16"),
        ("stems", "stems", "100", "0.05", "5"),
        ("total", "", "400", "", "29 USD"),
    ]
    assert est.summary() == "100 rows, 400 calls, estimated cost 29 USD"


def test_estimate_sums_without_float_drift() -> None:
    spec = PipelineSpec(
        name="words",
        steps=[
            StepSpec(name="a", action="lyrics", params={"prompt": "rain"}),
            StepSpec(name="b", action="lyrics", params={"prompt": "snow"}),
        ],
    )
    # Adding 0.005 six times in floats gives 0.030000000000000002.
    assert estimate(spec, 3, PriceTable.load()).cost == 0.03


def test_estimate_in_credits(tmp_path: Path) -> None:
    table = PriceTable.load(write(tmp_path, 'currency = "credits"\n[prices]\ngenerate = 1\n'))
    spec = PipelineSpec(
        name="one",
        steps=[
            StepSpec(name="song", action="generate", params={"prompt": "rain"}, repeat=3),
        ],
    )
    est = estimate(spec, 2, table)
    assert (est.cost, est.currency, est.calls_per_action) == (6.0, "credits", {"generate": 6})


def test_estimate_of_no_rows_is_free() -> None:
    est = estimate(REMIX, 0, PriceTable.load())
    assert est.cost == 0 and est.calls == 0
    with pytest.raises(ValueError, match="rows"):
        estimate(REMIX, -1, PriceTable.load())
