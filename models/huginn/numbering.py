"""Flat layer numbering of a recurrent-depth model (no torch, no transformers).

latentrun numbers layers in the order the computation visits blocks: the
prelude blocks, then every core block of every recurrence step (step-major),
then the coda blocks. With the published 2 + 4 x 32 + 2 blocks:

    0-1      prelude.0, prelude.1
    2-129    core.{b}@step{s}  ->  index 2 + 4*s + b
    130-131  coda.0, coda.1

``embed`` (the scaled embedding) and ``final_norm`` are named, not numbered.
The seed's indices 1, 66, 127, 129 are the same layers here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HuginnNumbering:
    """Index <-> (block, step) conversions for one recurrence depth."""

    n_prelude: int
    n_core: int
    n_coda: int
    num_steps: int

    @property
    def num_layers(self) -> int:
        """Number of block visits (flat layers) in a run with ``num_steps``."""
        return self.n_prelude + self.n_core * self.num_steps + self.n_coda

    def prelude_index(self, block: int) -> int:
        self._check(block, self.n_prelude, "prelude block")
        return block

    def core_index(self, block: int, step: int) -> int:
        """Flat index of core block ``block`` at recurrence step ``step`` (both 0-based)."""
        self._check(block, self.n_core, "core block")
        self._check(step, self.num_steps, "step")
        return self.n_prelude + step * self.n_core + block

    def coda_index(self, block: int) -> int:
        self._check(block, self.n_coda, "coda block")
        return self.n_prelude + self.n_core * self.num_steps + block

    def alias(self, index: int) -> tuple:
        """``("prelude", i)``, ``("core", block, step)`` or ``("coda", i)`` for a flat index."""
        self._check(index, self.num_layers, "layer index")
        if index < self.n_prelude:
            return ("prelude", index)
        core_end = self.n_prelude + self.n_core * self.num_steps
        if index < core_end:
            step, block = divmod(index - self.n_prelude, self.n_core)
            return ("core", block, step)
        return ("coda", index - core_end)

    def index(self, alias: tuple) -> int:
        """Inverse of :meth:`alias`."""
        kind = alias[0]
        if kind == "prelude":
            return self.prelude_index(alias[1])
        if kind == "core":
            return self.core_index(alias[1], alias[2])
        if kind == "coda":
            return self.coda_index(alias[1])
        raise ValueError(f"unknown layer alias {alias!r}")

    def name(self, index: int) -> str:
        """Stable layer name: ``prelude.0``, ``core.1@step5``, ``coda.0``."""
        alias = self.alias(index)
        if alias[0] == "core":
            return f"core.{alias[1]}@step{alias[2]}"
        return f"{alias[0]}.{alias[1]}"

    def parse_name(self, name: str) -> int:
        """Inverse of :meth:`name`."""
        kind, _, rest = name.partition(".")
        if kind == "core":
            block, _, step = rest.partition("@step")
            return self.core_index(int(block), int(step))
        return self.index((kind, int(rest)))

    @staticmethod
    def _check(value: int, bound: int, what: str) -> None:
        if not 0 <= value < bound:
            raise IndexError(f"{what} {value} out of range 0..{bound - 1}")


PUBLISHED = HuginnNumbering(n_prelude=2, n_core=4, n_coda=2, num_steps=32)
"""Numbering of the published huginn-0125 at its default 32 steps (132 layers)."""


def index_to_block_step(index: int, numbering: HuginnNumbering = PUBLISHED) -> tuple:
    """Flat index -> alias; e.g. 66 -> ("core", 0, 16) for the published model."""
    return numbering.alias(index)


def block_step_to_index(block: int, step: int, numbering: HuginnNumbering = PUBLISHED) -> int:
    """(core block, step) -> flat index; e.g. (0, 16) -> 66 for the published model."""
    return numbering.core_index(block, step)
