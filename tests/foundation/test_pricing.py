import pytest

from schemas.events import parse_event
from schemas.normalize import normalize_event
from schemas.pricing import PRICES, PRICING_VERSION, cost_usd, model_family, normalize_provider


@pytest.mark.parametrize("provider,model,family", [
    ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
    ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("openai", "gpt-4.1-2025-04-14", "gpt-4.1"),
    ("openai", "o3-mini-2025-01-31", "o3-mini"),
    ("openai", "gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
    ("anthropic", "claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
    ("anthropic", "claude-sonnet-4-20250514", "claude-sonnet-4"),
    ("anthropic", "claude-opus-4-1-20250805", "claude-opus-4-1"),
    ("anthropic", "claude-3-haiku-20240307", "claude-3-haiku"),
    ("anthropic", "anthropic.claude-3-5-sonnet-20240620-v1:0", "claude-3-5-sonnet"),
    ("google", "models/gemini-1.5-pro-002", "gemini-1.5-pro"),
    ("google", "gemini-2.5-flash-preview-05-20", "gemini-2.5-flash"),
    ("google", "gemini-2.0-flash-001", "gemini-2.0-flash"),
    ("mistral", "mistral-large-2411", "mistral-large"),
    ("mistral", "mistral-small-latest", "mistral-small"),
    ("cohere", "command-r-plus-08-2024", "command-r-plus"),
    ("cohere", "command-r-08-2024", "command-r"),
])
def test_dated_model_ids_map_to_their_family(provider, model, family):
    assert model_family(provider, model) == family
    assert (provider, family) in PRICES


@pytest.mark.parametrize("given,model,expected", [
    ("OpenAI", None, "openai"), ("azure", None, "openai"), ("gemini", None, "google"),
    ("mistralai", None, "mistral"), (None, "claude-3-haiku", "anthropic"), ("", "command-r", "cohere"),
    (None, "llama-3", "unknown"),
])
def test_provider_normalization(given, model, expected):
    assert normalize_provider(given, model) == expected


def test_cost_equals_the_table_for_every_priced_model():
    for (provider, family), price in PRICES.items():
        cost, status = cost_usd(provider, family, 1_000_000, 1_000_000)
        assert status == "priced"
        assert cost == pytest.approx(price.input + price.output)


def test_cached_input_is_billed_at_the_cached_price():
    cost, _ = cost_usd("openai", "gpt-4o", 1_000_000, 0, 400_000)
    assert cost == pytest.approx(0.6 * 2.50 + 0.4 * 1.25)
    # Mistral has no cached price: cached tokens cost as normal input.
    cost, _ = cost_usd("mistral", "mistral-large", 1_000_000, 0, 400_000)
    assert cost == pytest.approx(2.00)


def test_unknown_model_costs_null_not_zero_and_is_flagged():
    e = normalize_event(parse_event({"type": "llm_call", "agent_id": "a", "provider": "acme", "model": "rocket-9",
                                     "tokens_in": 10, "tokens_out": 10}), "p")
    assert e.cost_usd is None and e.pricing_status == "unknown_model"
    e = normalize_event(parse_event({"type": "llm_call", "agent_id": "a", "provider": "openai", "model": "gpt-4o"}), "p")
    assert e.cost_usd is None and e.pricing_status == "no_tokens"


def test_event_is_priced_at_normalization():
    e = normalize_event(parse_event({"type": "llm_call", "agent_id": "a", "provider": "anthropic",
                                     "model": "claude-3-5-sonnet-20241022", "tokens_in": 2000, "tokens_out": 500}), "p")
    assert e.model_family == "claude-3-5-sonnet"
    assert e.cost_usd == pytest.approx((2000 * 3 + 500 * 15) / 1e6)
    assert e.pricing_version == PRICING_VERSION and e.pricing_status == "priced"
