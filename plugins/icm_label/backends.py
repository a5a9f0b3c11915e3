"""Backends: what scores a claim's label given demonstrations.

Every backend answers one question — the signed log-odds
``log P(true word) − log P(false word)`` of the label after a target
claim's prompt, with demonstrations in front — for two kinds of context:

* :meth:`Backend.loo`: leave-one-out inside a batch (ICM's mutual
  predictability and its label prediction), demonstrations ordered by
  :mod:`plugins.icm_label.contexts`;
* :meth:`Backend.few_shot`: one fixed demonstration list in front of many
  targets (zero-shot labelling with no demonstrations, downstream many-shot
  evaluation).

Three backends: ``local`` (transformers, exact log-probabilities, prefix
key/value reuse; :mod:`plugins.icm_label.local_backend`), ``openai`` (an
OpenAI-compatible completions server with top-k logprobs;
:mod:`plugins.icm_label.openai_backend`) and ``planted`` (below), a
deterministic simulator for checking the search itself.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Any, Sequence

from plugins.icm_label.contexts import SEPARATOR, context_text, demonstration
from plugins.icm_label.testbeds import Claim, Testbed

BACKENDS = ("local", "openai", "planted")


class BackendError(RuntimeError):
    """The backend cannot score (server down, no logprobs, context too long); the message says what to do."""


class Backend:
    """Base class: prompts come from the testbed; subclasses implement :meth:`score_texts` or override both."""

    name = "base"

    def __init__(self, testbed: Testbed, separator: str = SEPARATOR) -> None:
        self.testbed = testbed
        self.separator = separator
        self.stats: dict[str, int] = {"queries": 0}

    def prompts(self, claims: Sequence[Claim]) -> list[str]:
        return [self.testbed.prompt(c) for c in claims]

    def loo(self, claims: Sequence[Claim], labels: Sequence[int | None], targets: Sequence[int]) -> list[float]:
        """Log-odds for each target slot with every other labelled slot of ``claims`` as demonstrations."""
        prompts = self.prompts(claims)
        texts = [context_text(prompts, labels, t, self.testbed.true_word, self.testbed.false_word, self.separator)
                 for t in targets]
        return self.score_texts(texts)

    def few_shot(self, demos: Sequence[Claim], demo_labels: Sequence[int], targets: Sequence[Claim]) -> list[float]:
        """Log-odds for each target after the same demonstrations (none: zero-shot)."""
        prefix = "".join(demonstration(p, y, self.testbed.true_word, self.testbed.false_word, self.separator)
                         for p, y in zip(self.prompts(demos), demo_labels))
        return self.score_texts([prefix + p for p in self.prompts(targets)])

    def score_texts(self, texts: Sequence[str]) -> list[float]:
        raise NotImplementedError

    def close(self) -> None:
        """Free what the backend holds (a model, a connection)."""


class PlantedBackend(Backend):
    """A deterministic stand-in for a language model, with planted, noisy label preferences.

    Each claim has a planted truth ``y*`` (its gold label) and a fixed noise
    draw ``e ~ N(0, noise)`` seeded by ``(seed, claim)``. Alone, a claim
    leans ``strength·(2y*−1) + e`` — wrong for claims whose noise outweighs
    the strength, so zero-shot labelling is imperfect. Demonstrations move
    it like in-context learning does: by ``context·a·(2y*−1)``, where ``a``
    is the mean agreement (+1/−1) of the demonstrations' labels with their
    planted truth. Correct labels therefore predict each other better than
    any other labelling — what ICM must discover — while no claim's label
    is available to the search. Used to check the search, never to label
    real data.
    """

    name = "planted"

    def __init__(self, testbed: Testbed, strength: float = 1.0, noise: float = 1.5, context: float = 2.0,
                 seed: int = 0) -> None:
        super().__init__(testbed)
        self.strength, self.noise, self.context, self.seed = strength, noise, context, seed

    def _truth(self, claim: Claim) -> int:
        if claim.label is None:
            raise BackendError(f"the planted backend needs a gold label for every claim; claim {claim.index} has "
                               "none (it simulates a model from planted labels: use it only on labelled data)")
        return claim.label

    def _lean(self, claim: Claim) -> float:
        digest = hashlib.sha256(f"{self.seed}:{claim.consistency_id}:{claim.index}:{claim.choice}".encode()).digest()
        draw = random.Random(digest).gauss(0.0, 1.0)
        return self.strength * (2 * self._truth(claim) - 1) + self.noise * draw

    def _score(self, claim: Claim, demos: Sequence[tuple[Claim, int]]) -> float:
        self.stats["queries"] += 1
        agreement = (sum(1 if y == self._truth(c) else -1 for c, y in demos) / len(demos)) if demos else 0.0
        return self._lean(claim) + self.context * agreement * (2 * self._truth(claim) - 1)

    def loo(self, claims: Sequence[Claim], labels: Sequence[int | None], targets: Sequence[int]) -> list[float]:
        from plugins.icm_label.contexts import context_slots

        return [self._score(claims[t], [(claims[s], labels[s]) for s in context_slots(labels, t)])  # type: ignore[misc]
                for t in targets]

    def few_shot(self, demos: Sequence[Claim], demo_labels: Sequence[int], targets: Sequence[Claim]) -> list[float]:
        pairs = list(zip(demos, demo_labels))
        return [self._score(t, pairs) for t in targets]


def label_of(log_odds: float) -> int:
    """The predicted label: true when the log-odds are positive (ties go to false, as published)."""
    return 1 if log_odds > 0 else 0


def make_backend(params: dict[str, Any], testbed: Testbed, workspace: Any = None, logger: Any = None) -> Backend:
    """The backend the job params ask for (heavy imports only for the one used)."""
    kind = params["backend"]
    if kind == "planted":
        return PlantedBackend(testbed, strength=params["planted_strength"], noise=params["planted_noise"],
                              context=params["planted_context"], seed=params["seed"])
    if kind == "openai":
        from plugins.icm_label.openai_backend import OpenAIBackend

        return OpenAIBackend.from_params(params, testbed)
    if kind == "local":
        from plugins.icm_label.local_backend import LocalBackend

        return LocalBackend.from_params(params, testbed, workspace, logger)
    raise BackendError(f"backend {kind!r} is not one of {', '.join(BACKENDS)}")


def finite(value: float) -> float:
    """Clamp infinities (a label word with probability 0) so energies stay comparable."""
    if math.isnan(value):
        return 0.0
    return max(-1e4, min(1e4, value))
