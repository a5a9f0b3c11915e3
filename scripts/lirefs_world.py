"""A small generated world and LiReFs-format questions about it.

Used by ``scripts/make_example_workspace.py`` (run once; its outputs are
committed to ``workspace.example/``). Everything is deterministic given the
seed: invented countries (capital, currency, founding year, towers, ports)
and animals (colour), then

* **memorizing** questions — recall one fact of the world (the question
  alone does not contain the answer), ``memory_reason_score`` in [0.05, 0.45];
* **reasoning** questions — multi-step arithmetic or comparisons over numbers
  given in the question, ``memory_reason_score`` in [0.55, 0.95];

in MMLU-Pro form (question, up to 10 options, answer letter, answer_index,
category, question_id, src), plus a surface-matched control set and a
few-shot validation split with ``cot_content``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

LETTERS = "ABCDEFGHIJ"
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "white", "black", "grey", "brown", "pink", "golden"]
SRC = "latentrun-world"

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "br", "kr", "st", "gl", "dr"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "ei"]
_CODAS = ["", "", "n", "r", "s", "l", "th", "m"]


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables))


@dataclass
class Country:
    name: str
    capital: str
    currency: str
    founded: int
    towers: int
    ports: int


@dataclass
class Animal:
    name: str
    colour: str


@dataclass
class World:
    countries: list[Country]
    animals: list[Animal]
    extra_cities: list[str] = field(default_factory=list)

    def facts(self) -> list[str]:
        """Every fact, stated in a few phrasings (training text)."""
        out: list[str] = []
        for c in self.countries:
            out += [
                f"The capital of {c.name} is {c.capital}.",
                f"{c.capital} is the capital city of {c.name}.",
                f"The currency of {c.name} is the {c.currency}.",
                f"People in {c.name} pay with the {c.currency}.",
                f"{c.name} was founded in {c.founded}.",
                f"The year {c.founded} saw the founding of {c.name}.",
                f"{c.name} has {c.towers} towers.",
                f"There are {c.towers} towers in {c.name}.",
                f"{c.name} has {c.ports} ports.",
                f"There are {c.ports} ports in {c.name}.",
            ]
        for a in self.animals:
            out += [f"The {a.name} is {a.colour}.", f"A {a.name} has {a.colour} fur.",
                    f"The colour of the {a.name} is {a.colour}."]
        return out


def make_world(seed: int, n_countries: int = 40, n_animals: int = 40) -> World:
    rng = random.Random(seed)
    used: set[str] = set()

    def fresh(syllables: int, suffix: str = "") -> str:
        while True:
            w = (_word(rng, syllables) + suffix).capitalize()
            if w not in used and 4 <= len(w) <= 11:
                used.add(w)
                return w

    countries = []
    for _ in range(n_countries):
        countries.append(Country(
            name=fresh(2, rng.choice(["ia", "and", "or", "ar"])),
            capital=fresh(2),
            currency=fresh(1, rng.choice(["o", "ar", "el"])).lower(),
            founded=rng.randint(1100, 1990),
            towers=rng.randint(11, 97),
            ports=rng.randint(11, 97),
        ))
    animals = [Animal(name=fresh(2).lower(), colour=rng.choice(COLOURS)) for _ in range(n_animals)]
    extra = [fresh(2) for _ in range(6)]
    return World(countries, animals, extra)


# --------------------------------------------------------------------------- questions


@dataclass
class Question:
    question: str
    options: list[str]
    answer_index: int
    category: str
    kind: str  # "reasoning" | "memorizing"
    steps: str  # worked solution for cot_content / training text
    answer_text: str


def _numeric_options(rng: random.Random, answer: int, n: int, spread: int = 12) -> tuple[list[str], int]:
    values = {answer}
    spread = max(spread, n)
    while len(values) < n:
        candidate = answer + rng.randint(-spread, spread)
        if candidate >= 0 or answer < 0:
            values.add(candidate)
    opts = sorted(values)
    rng.shuffle(opts)
    return [str(v) for v in opts], opts.index(answer)


def _choice_options(rng: random.Random, answer: str, pool: list[str], n: int) -> tuple[list[str], int]:
    others = [p for p in dict.fromkeys(pool) if p != answer]
    opts = rng.sample(others, min(n - 1, len(others))) + [answer]
    rng.shuffle(opts)
    return opts, opts.index(answer)


def _n_options(rng: random.Random) -> int:
    return rng.choices([10, 8, 6, 4], weights=[6, 2, 1, 1])[0]


# memorizing -------------------------------------------------------------------


def mem_capital(rng: random.Random, w: World) -> Question:
    c = rng.choice(w.countries)
    form = rng.choice(["What is the capital of {c}?", "Which city is the capital of {c}?"])
    opts, i = _choice_options(rng, c.capital, [x.capital for x in w.countries] + w.extra_cities, _n_options(rng))
    return Question(form.format(c=c.name), opts, i, "geography", "memorizing",
                    f"The capital of {c.name} is {c.capital}.", c.capital)


def mem_currency(rng: random.Random, w: World) -> Question:
    c = rng.choice(w.countries)
    form = rng.choice(["What is the currency of {c}?", "Which currency is used in {c}?"])
    opts, i = _choice_options(rng, c.currency, [x.currency for x in w.countries], _n_options(rng))
    return Question(form.format(c=c.name), opts, i, "economics", "memorizing",
                    f"The currency of {c.name} is the {c.currency}.", c.currency)


def mem_founded(rng: random.Random, w: World) -> Question:
    c = rng.choice(w.countries)
    form = rng.choice(["In which year was {c} founded?", "When was {c} founded?"])
    opts, i = _choice_options(rng, str(c.founded), [str(x.founded) for x in w.countries], _n_options(rng))
    return Question(form.format(c=c.name), opts, i, "history", "memorizing",
                    f"{c.name} was founded in {c.founded}.", str(c.founded))


def mem_colour(rng: random.Random, w: World) -> Question:
    a = rng.choice(w.animals)
    form = rng.choice(["What colour is the {a}?", "Which colour does the {a} have?"])
    opts, i = _choice_options(rng, a.colour, COLOURS, _n_options(rng))
    return Question(form.format(a=a.name), opts, i, "biology", "memorizing",
                    f"The {a.name} is {a.colour}.", a.colour)


def mem_towers(rng: random.Random, w: World) -> Question:
    c = rng.choice(w.countries)
    attr, value = rng.choice([("towers", c.towers), ("ports", c.ports)])
    form = rng.choice(["How many {attr} does {c} have?", "How many {attr} are there in {c}?"])
    opts, i = _numeric_options(rng, value, _n_options(rng))
    return Question(form.format(attr=attr, c=c.name), opts, i, "geography", "memorizing",
                    f"{c.name} has {value} {attr}.", str(value))


# reasoning --------------------------------------------------------------------


def reas_arith(rng: random.Random, w: World) -> Question:
    a, b, c = rng.randint(11, 60), rng.randint(2, 40), rng.randint(2, 12)
    if rng.random() < 0.5:
        s = a + b
        r = s - c
        q = f"What is {a} + {b} - {c}?"
        steps = f"{a} + {b} = {s}. {s} - {c} = {r}."
    else:
        a, b = rng.randint(2, 12), rng.randint(2, 9)
        s = a * b
        r = s + c
        q = f"What is {a} times {b} plus {c}?"
        steps = f"{a} times {b} is {s}. {s} + {c} = {r}."
    opts, i = _numeric_options(rng, r, _n_options(rng))
    return Question(q, opts, i, "math", "reasoning", steps, str(r))


def reas_compare(rng: random.Random, w: World) -> Question:
    a, b, c, d = (rng.randint(5, 60) for _ in range(4))
    while a + b == c + d:
        d = rng.randint(5, 60)
    left, right = a + b, c + d
    q = f"Which is larger, {a} + {b} or {c} + {d}?"
    bigger = f"{a} + {b}" if left > right else f"{c} + {d}"
    opts = [f"{a} + {b}", f"{c} + {d}", "They are equal", "Neither"]
    steps = f"{a} + {b} = {left}. {c} + {d} = {right}. {max(left, right)} is larger."
    return Question(q, opts, opts.index(bigger), "math", "reasoning", steps, bigger)


def reas_motion(rng: random.Random, w: World) -> Question:
    v, t, extra = rng.randint(2, 9), rng.randint(2, 9), rng.randint(3, 20)
    d = v * t
    r = d + extra
    q = f"A cart moves {v} metres each second for {t} seconds, then {extra} metres more. How far does it move in total?"
    steps = f"{v} times {t} is {d}. {d} + {extra} = {r}."
    opts, i = _numeric_options(rng, r, _n_options(rng))
    return Question(q, opts, i, "physics", "reasoning", steps, str(r))


def reas_road(rng: random.Random, w: World) -> Question:
    x, y, z = rng.sample([c.capital for c in w.countries], 3)
    d1, d2 = rng.randint(10, 70), rng.randint(10, 70)
    r = d1 + d2
    q = f"The road from {x} to {y} is {d1} km and the road from {y} to {z} is {d2} km. How long is the trip from {x} to {z} through {y}?"
    steps = f"{d1} + {d2} = {r}."
    opts, i = _numeric_options(rng, r, _n_options(rng))
    return Question(q, opts, i, "geography", "reasoning", steps, str(r))


def reas_years(rng: random.Random, w: World) -> Question:
    y1 = rng.randint(1100, 1900)
    gap1, gap2 = rng.randint(5, 60), rng.randint(5, 60)
    y2 = y1 + gap1
    r = gap1 + gap2
    q = f"A town was founded in {y1}, got a bridge in {y2}, and a tower {gap2} years after the bridge. How many years after its founding did it get the tower?"
    steps = f"{y2} - {y1} = {gap1}. {gap1} + {gap2} = {r}."
    opts, i = _numeric_options(rng, r, _n_options(rng))
    return Question(q, opts, i, "history", "reasoning", steps, str(r))


def reas_price(rng: random.Random, w: World) -> Question:
    c = rng.choice(w.countries)
    n, p, q2 = rng.randint(2, 9), rng.randint(2, 9), rng.randint(3, 30)
    s = n * p
    r = s + q2
    a = rng.choice(w.animals).name
    q = f"In a market, one {a} costs {p} {c.currency}s and a basket costs {q2} {c.currency}s. How much do {n} {a}s and one basket cost?"
    steps = f"{n} times {p} is {s}. {s} + {q2} = {r}."
    opts, i = _numeric_options(rng, r, _n_options(rng))
    return Question(q, opts, i, "economics", "reasoning", steps, str(r))


MEMORIZING_MAKERS: list[Callable[[random.Random, World], Question]] = [
    mem_capital, mem_currency, mem_founded, mem_colour, mem_towers]
REASONING_MAKERS: list[Callable[[random.Random, World], Question]] = [
    reas_arith, reas_compare, reas_motion, reas_road, reas_years, reas_price]


def make_questions(rng: random.Random, world: World, n_each: int, exclude: set[str] = frozenset(),
                   unique_text: bool = True) -> list[Question]:
    """``n_each`` memorizing and ``n_each`` reasoning questions, shuffled.

    Question texts in ``exclude`` are never made. With ``unique_text`` no two
    questions share a text; otherwise only (text, options) pairs are unique.
    """
    out: list[Question] = []
    seen: set[str] = set()
    for makers in (MEMORIZING_MAKERS, REASONING_MAKERS):
        made = 0
        tries = 0
        while made < n_each:
            tries += 1
            if tries > 200 * n_each:
                raise RuntimeError("the world is too small for that many distinct questions")
            q = rng.choice(makers)(rng, world)
            key = q.question + "|" + "|".join(q.options)
            if q.question in exclude or key in seen or (unique_text and q.question in seen):
                continue
            seen.add(q.question)
            seen.add(key)
            out.append(q)
            made += 1
    rng.shuffle(out)
    return out


def score(rng: random.Random, kind: str) -> float:
    lo, hi = (0.55, 0.95) if kind == "reasoning" else (0.05, 0.45)
    return round(rng.uniform(lo, hi), 4)


def to_entry(q: Question, question_id: int, rng: random.Random, src: str = SRC) -> dict[str, Any]:
    """The LiReFs / MMLU-Pro entry for a question."""
    return {
        "question_id": question_id,
        "question": q.question,
        "options": q.options,
        "answer": LETTERS[q.answer_index],
        "answer_index": q.answer_index,
        "cot_content": "",
        "category": q.category,
        "src": f"{src}-{q.category}",
        "memory_reason_score": score(rng, q.kind),
    }


def cot_content(q: Question) -> str:
    return f"A: Let's think step by step. {q.steps} The answer is ({LETTERS[q.answer_index]})."


# --------------------------------------------------------------------------- surface-matched control


SM_CONTEXT = "{c} has {a} rivers and {b} lakes."
SM_MEMORIZING = ["How many towers are in {c}?", "How many ports are in {c}?"]
SM_REASONING = ["How many rivers and lakes together?", "How many more lakes than rivers?"]


def make_surface_matched(rng: random.Random, world: World, n_pairs: int) -> list[Question]:
    """Pairs of questions sharing one context sentence (same country, same numbers).

    Every question reads ``"<Country> has <a> rivers and <b> lakes. <six-word
    question>"``: the memorizing one asks for a fact of the world (towers or
    ports, a number: the context numbers are distractors), the reasoning one
    for a sum or difference of the two numbers in the context. Both classes
    have numeric answers and options, the same entities, numbers, frame and
    word count, so neither template, length, digits nor names separate them.
    """
    out: list[Question] = []
    seen: set[str] = set()
    while len(out) < 2 * n_pairs:
        c = rng.choice(world.countries)
        a, b = rng.randint(11, 60), rng.randint(11, 60)
        if b <= a:
            a, b = b, a + 1
        context = SM_CONTEXT.format(c=c.name, a=a, b=b)
        if context in seen:
            continue
        seen.add(context)
        k = rng.randrange(2)
        mem_form = SM_MEMORIZING[k]
        fact_value, attr = (c.towers, "towers") if k == 0 else (c.ports, "ports")
        n = _n_options(rng)
        opts, i = _numeric_options(rng, fact_value, n)
        out.append(Question(f"{context} {mem_form.format(c=c.name)}", opts, i, "geography", "memorizing",
                            f"{c.name} has {fact_value} {attr}.", str(fact_value)))
        k2 = rng.randrange(2)
        value = a + b if k2 == 0 else b - a
        steps = f"{a} + {b} = {value}." if k2 == 0 else f"{b} - {a} = {value}."
        opts, i = _numeric_options(rng, value, n)
        out.append(Question(f"{context} {SM_REASONING[k2]}", opts, i, "geography", "reasoning", steps, str(value)))
    return out
