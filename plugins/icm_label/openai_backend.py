"""An OpenAI-compatible completions backend (e.g. vLLM serving a *base* model), as published.

Each context is sent to ``POST {api_base}/completions`` with
``max_tokens=1, temperature=0, logprobs=<top-k>``; the label score is the
published approximation from the top-k logprobs of the first generated
token: ``log(ε + Σ p(tokens containing the true word)) − log(ε + Σ
p(tokens containing the false word))``, lower-cased, ε = 1e-5, tokens
containing both or neither ignored. Chat-only APIs return no such logprobs
and cannot be used.

The server address comes from the ``api_base`` param, else the
``ICM_API_BASE`` or ``OPENAI_BASE_URL`` environment variable; the key from
the environment variable named by ``api_key_env`` (the key itself is never
a param, so it never lands in a run manifest). Requests time out after
``timeout`` seconds and are retried ``max_retries`` times with exponential
backoff (``backoff``·1.5^attempt seconds) on connection errors, time-outs,
HTTP 429 and 5xx; other HTTP errors and answers without logprobs stop the
run with a message saying what the server must provide. Only the standard
library is used.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.request
from typing import Any, Sequence

from plugins.icm_label.backends import Backend, BackendError, finite
from plugins.icm_label.testbeds import Testbed

API_BASE_ENVS = ("ICM_API_BASE", "OPENAI_BASE_URL")
EPSILON = 1e-5


def resolve_api_base(param: str) -> str:
    """The server URL from the param or the environment; '' when neither says."""
    if param:
        return param.rstrip("/")
    for name in API_BASE_ENVS:
        if os.environ.get(name):
            return os.environ[name].rstrip("/")
    return ""


class OpenAIBackend(Backend):
    """Scores through a completions endpoint that returns top-k logprobs."""

    name = "openai"

    def __init__(self, testbed: Testbed, api_base: str, model: str, *, api_key: str = "", top_logprobs: int = 20,
                 timeout: float = 100.0, max_retries: int = 5, backoff: float = 1.0, request_batch: int = 16) -> None:
        super().__init__(testbed)
        if not api_base:
            raise BackendError("backend=openai needs the server URL: --set api_base=http://host:8000/v1 or the "
                               f"environment variable {API_BASE_ENVS[0]}")
        self.url = api_base.rstrip("/") + "/completions"
        self.model, self.api_key = model, api_key
        self.top_logprobs, self.timeout = top_logprobs, timeout
        self.max_retries, self.backoff, self.request_batch = max_retries, backoff, max(1, request_batch)
        self.stats.update(requests=0, retries=0)

    @classmethod
    def from_params(cls, params: dict[str, Any], testbed: Testbed) -> "OpenAIBackend":
        key_env = params.get("api_key_env") or ""
        return cls(testbed, resolve_api_base(params.get("api_base", "")), params.get("api_model") or params["model"],
                   api_key=os.environ.get(key_env, "") if key_env else "", top_logprobs=params["logprobs"],
                   timeout=params["timeout"], max_retries=params["max_retries"], backoff=params["backoff"],
                   request_batch=params["request_batch"])

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        out: list[float] = []
        for start in range(0, len(texts), self.request_batch):
            chunk = list(texts[start:start + self.request_batch])
            answer = self._post({"model": self.model, "prompt": chunk, "max_tokens": 1, "temperature": 0,
                                 "logprobs": self.top_logprobs})
            out += self._parse(answer, len(chunk))
        self.stats["queries"] += len(texts)
        return out

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats["retries"] += 1
                time.sleep(self.backoff * 1.5 ** (attempt - 1))
            self.stats["requests"] += 1
            request = urllib.request.Request(self.url, data=data, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    text = response.read().decode("utf-8", "replace")
            except urllib.error.HTTPError as err:
                detail = err.read().decode("utf-8", "replace")[:300]
                last = f"HTTP {err.code}: {detail}"
                if err.code == 429 or err.code >= 500:
                    continue
                raise BackendError(f"the completions server at {self.url} refused the request ({last})") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
                reason = getattr(err, "reason", err)
                last = f"{type(reason).__name__}: {reason}"
                continue
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                raise BackendError(f"the completions server at {self.url} answered with something that is not "
                                   f"JSON: {text[:200]!r}") from None
        raise BackendError(f"cannot reach the completions server at {self.url} after {self.max_retries + 1} "
                           f"attempt(s) ({last}); is it running? (api_base / {API_BASE_ENVS[0]}, timeout, "
                           "max_retries)")

    def _parse(self, answer: dict[str, Any], expected: int) -> list[float]:
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not isinstance(choices, list) or len(choices) != expected:
            raise BackendError(f"the completions server at {self.url} returned {len(choices or [])} choices for "
                               f"{expected} prompts; it must be an OpenAI-compatible /completions endpoint")
        choices = sorted(choices, key=lambda c: c.get("index", 0))
        scores = []
        for choice in choices:
            logprobs = choice.get("logprobs") or {}
            top = logprobs.get("top_logprobs") if isinstance(logprobs, dict) else None
            if not top or not isinstance(top[0], dict):
                raise BackendError(
                    f"the completions server at {self.url} returned no top logprobs; ICM needs a completions "
                    f"endpoint of a base model that returns logprobs={self.top_logprobs} (vLLM does; chat-only APIs "
                    "do not)")
            scores.append(self.log_odds_from_top(top[0]))
        return scores

    def log_odds_from_top(self, top: dict[str, float]) -> float:
        """The published top-k approximation of log P(true) − log P(false)."""
        yes, no = self.testbed.true_word.lower(), self.testbed.false_word.lower()
        p_yes = p_no = 0.0
        for token, logprob in top.items():
            text = token.lower()
            if (yes in text) == (no in text):
                continue
            if yes in text:
                p_yes += math.exp(logprob)
            else:
                p_no += math.exp(logprob)
        if p_yes == 0.0 and p_no == 0.0:
            return 0.0
        return finite(math.log(EPSILON + p_yes) - math.log(EPSILON + p_no))
