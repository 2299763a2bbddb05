"""Usage extraction per provider wire format: full JSON bodies and stream events.

Each module offers `from_json(doc, usage)` for a whole response body, `from_event(name, doc, usage)`
for one stream event, and `error_type(doc)` for an error body. Fields the provider did not send
stay None: the proxy never invents token counts.
"""

from __future__ import annotations

from types import ModuleType

from proxy.providers import anthropic, cohere, google, openai
from proxy.providers.base import Usage

MODULES: dict[str, ModuleType] = {"openai": openai, "mistral": openai, "anthropic": anthropic,
                                  "google": google, "cohere": cohere}

__all__ = ["MODULES", "Usage"]
