"""Versioned USD pricing table, provider/model normalization and event costing.

Prices are USD per 1M tokens. `tokens_in` counts every input token, cached ones included;
`tokens_cached` is the part billed at the cached-input price.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

PRICING_VERSION = "2026-11-01"


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cached_input: float | None = None  # None: the provider bills cached input as normal input


# (provider, model family) -> price. Longest family prefix wins in `model_family`.
PRICES: dict[tuple[str, str], Price] = {
    # OpenAI
    ("openai", "gpt-4o"): Price(2.50, 10.00, 1.25),
    ("openai", "gpt-4o-mini"): Price(0.15, 0.60, 0.075),
    ("openai", "gpt-4.1"): Price(2.00, 8.00, 0.50),
    ("openai", "gpt-4.1-mini"): Price(0.40, 1.60, 0.10),
    ("openai", "gpt-4.1-nano"): Price(0.10, 0.40, 0.025),
    ("openai", "gpt-4-turbo"): Price(10.00, 30.00),
    ("openai", "gpt-4"): Price(30.00, 60.00),
    ("openai", "gpt-3.5-turbo"): Price(0.50, 1.50),
    ("openai", "o1"): Price(15.00, 60.00, 7.50),
    ("openai", "o1-mini"): Price(1.10, 4.40, 0.55),
    ("openai", "o3"): Price(2.00, 8.00, 0.50),
    ("openai", "o3-mini"): Price(1.10, 4.40, 0.55),
    ("openai", "o4-mini"): Price(1.10, 4.40, 0.275),
    ("openai", "text-embedding-3-small"): Price(0.02, 0.0),
    ("openai", "text-embedding-3-large"): Price(0.13, 0.0),
    # Anthropic (cached = cache read price)
    ("anthropic", "claude-opus-4"): Price(15.00, 75.00, 1.50),
    ("anthropic", "claude-opus-4-1"): Price(15.00, 75.00, 1.50),
    ("anthropic", "claude-opus-4-5"): Price(5.00, 25.00, 0.50),
    ("anthropic", "claude-sonnet-4"): Price(3.00, 15.00, 0.30),
    ("anthropic", "claude-sonnet-4-5"): Price(3.00, 15.00, 0.30),
    ("anthropic", "claude-haiku-4-5"): Price(1.00, 5.00, 0.10),
    ("anthropic", "claude-3-opus"): Price(15.00, 75.00, 1.50),
    ("anthropic", "claude-3-7-sonnet"): Price(3.00, 15.00, 0.30),
    ("anthropic", "claude-3-5-sonnet"): Price(3.00, 15.00, 0.30),
    ("anthropic", "claude-3-5-haiku"): Price(0.80, 4.00, 0.08),
    ("anthropic", "claude-3-haiku"): Price(0.25, 1.25, 0.03),
    # Google
    ("google", "gemini-1.5-pro"): Price(1.25, 5.00, 0.3125),
    ("google", "gemini-1.5-flash"): Price(0.075, 0.30, 0.01875),
    ("google", "gemini-2.0-flash"): Price(0.10, 0.40, 0.025),
    ("google", "gemini-2.0-flash-lite"): Price(0.075, 0.30),
    ("google", "gemini-2.5-pro"): Price(1.25, 10.00, 0.31),
    ("google", "gemini-2.5-flash"): Price(0.30, 2.50, 0.075),
    ("google", "gemini-2.5-flash-lite"): Price(0.10, 0.40, 0.025),
    # Mistral
    ("mistral", "mistral-large"): Price(2.00, 6.00),
    ("mistral", "mistral-medium"): Price(0.40, 2.00),
    ("mistral", "mistral-small"): Price(0.10, 0.30),
    ("mistral", "codestral"): Price(0.30, 0.90),
    ("mistral", "open-mistral-nemo"): Price(0.15, 0.15),
    # Cohere
    ("cohere", "command-r"): Price(0.15, 0.60),
    ("cohere", "command-r-plus"): Price(2.50, 10.00),
    ("cohere", "command-a"): Price(2.50, 10.00),
}

_FAMILIES_BY_PROVIDER: dict[str, list[str]] = {}
for _prov, _fam in PRICES:
    _FAMILIES_BY_PROVIDER.setdefault(_prov, []).append(_fam)
for _fams in _FAMILIES_BY_PROVIDER.values():
    _fams.sort(key=len, reverse=True)

PROVIDER_ALIASES = {
    "openai": "openai", "azure": "openai", "azure_openai": "openai", "azure.ai.openai": "openai",
    "anthropic": "anthropic", "claude": "anthropic", "aws.bedrock": "anthropic",
    "google": "google", "gemini": "google", "vertex": "google", "vertex_ai": "google",
    "gcp.gemini": "google", "gcp.vertex_ai": "google", "gcp.gen_ai": "google", "google_genai": "google",
    "mistral": "mistral", "mistralai": "mistral", "mistral_ai": "mistral",
    "cohere": "cohere", "cohere_ai": "cohere",
}

# Snapshot suffixes: -2024-08-06, -20241022, -0613, -001, -latest, -preview-05-20, -exp.
_DATED = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{4}|-\d{3}|-latest|-preview(-\d{2}-\d{2})?|-exp(-\d+)?|-v\d+(:\d+)?)$")


def normalize_provider(provider: str | None, model: str | None = None) -> str:
    p = (provider or "").strip().lower()
    if p in PROVIDER_ALIASES:
        return PROVIDER_ALIASES[p]
    if p and p != "unknown":
        return p
    return infer_provider(model) or "unknown"


def infer_provider(model: str | None) -> str | None:
    m = (model or "").lower().removeprefix("models/")
    if m.startswith(("gpt-", "o1", "o3", "o4", "text-embedding", "chatgpt")):
        return "openai"
    if m.startswith("claude"):
        return "anthropic"
    if m.startswith("gemini"):
        return "google"
    if m.startswith(("mistral", "open-mistral", "codestral", "ministral", "pixtral")):
        return "mistral"
    if m.startswith(("command", "c4ai")):
        return "cohere"
    return None


def _strip_snapshot(model: str) -> str:
    prev = None
    while prev != model:
        prev, model = model, _DATED.sub("", model)
    return model


def model_family(provider: str, model: str | None) -> str | None:
    """Map a model id (dated snapshot, `models/` prefix, Bedrock/Vertex names) to its priced family."""
    if not model:
        return None
    m = model.strip().lower().removeprefix("models/")
    m = m.split("/")[-1]  # "openai/gpt-4o", "publishers/google/models/gemini-2.0-flash"
    m = m.removeprefix("anthropic.").split("@")[0]
    stripped = _strip_snapshot(m)
    families = _FAMILIES_BY_PROVIDER.get(provider, [])
    for candidate in (m, stripped):
        if candidate in families:
            return candidate
    # Longest known family that prefixes the id, e.g. "gpt-4o-mini-search" -> "gpt-4o-mini".
    for fam in families:
        if stripped.startswith(fam + "-") or stripped == fam:
            return fam
    return stripped


def price_for(provider: str, family: str | None) -> Price | None:
    return PRICES.get((provider, family or ""))


def cost_usd(provider: str, family: str | None, tokens_in: int | None, tokens_out: int | None,
             tokens_cached: int | None = None) -> tuple[float | None, str]:
    """Return (cost, status). Cost is None, not 0, when the model or the tokens are unknown."""
    return _cost(price_for(provider, family), tokens_in, tokens_out, tokens_cached)


def _cost(price: Price | None, tokens_in: int | None, tokens_out: int | None,
          tokens_cached: int | None) -> tuple[float | None, str]:
    if price is None:
        return None, "unknown_model"
    if tokens_in is None and tokens_out is None:
        return None, "no_tokens"
    tin, tout = tokens_in or 0, tokens_out or 0
    cached = min(tokens_cached or 0, tin)
    cached_price = price.cached_input if price.cached_input is not None else price.input
    total = ((tin - cached) * price.input + cached * cached_price + tout * price.output) / 1_000_000
    # Rounded so that live and replayed sums are bit-identical.
    return round(total, 12), "priced"


@lru_cache(maxsize=4096)
def priced_model(provider: str | None, model: str | None) -> tuple[str, str | None, Price | None]:
    """(normalized provider, model family, price) of a raw provider/model pair; memoized, since a fleet
    uses few models and the regex work was a good part of an event's ingest cost."""
    normalized = normalize_provider(provider, model)
    family = model_family(normalized, model)
    return normalized, family, price_for(normalized, family)


_PRICED_FIELDS = frozenset({"provider", "model_family", "cost_usd", "pricing_status", "pricing_version"})


def price_event(event: Any) -> None:
    """Normalize provider/model and set cost fields of an llm_call event in place."""
    provider, family, price = priced_model(event.provider, event.model)
    cost, status = _cost(price, event.tokens_in, event.tokens_out, event.tokens_cached)
    fields = {"provider": provider, "model_family": family, "cost_usd": cost, "pricing_status": status,
              "pricing_version": PRICING_VERSION}
    fields_set = getattr(event, "__pydantic_fields_set__", None)
    if fields_set is None or event.model_config.get("validate_assignment"):
        for name, value in fields.items():
            setattr(event, name, value)
        return
    # What pydantic's __setattr__ does for plain fields (no assignment validation), once for all five.
    event.__dict__.update(fields)
    fields_set.update(_PRICED_FIELDS)
