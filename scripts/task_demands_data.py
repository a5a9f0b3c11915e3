"""Generators of the example task-demand stimuli and of the tiny models' training text.

Each generator draws items of one task in the published format from a
seeded ``random.Random``: the evaluation stimuli and the training corpus
come from different seeds, and the corpus skips every evaluated text, so
the models never see an item they are tested on. The domain is small on
purpose (a toy English with agreement and reflexives, short stories whose
last word repeats an earlier name, 2-digit matrices, price/duration word
problems) so a model of a few hundred thousand parameters learns it in a
few CPU-minutes.
"""

from __future__ import annotations

import random
from typing import Any

from plugins.run_experiment.prompts import (
    CRT_PROMPT, GRAMMAR_META, LAMBADA_META, money_canonical, render_cell, render_matrix,
)

PEOPLE = [("man", "men", "himself"), ("woman", "women", "herself"), ("boy", "boys", "himself"),
          ("girl", "girls", "herself"), ("king", "kings", "himself"), ("queen", "queens", "herself")]
ROLES = [("teacher", "teachers"), ("doctor", "doctors"), ("farmer", "farmers"), ("student", "students"),
         ("singer", "singers"), ("pilot", "pilots"), ("baker", "bakers"), ("lawyer", "lawyers")]
THINGS = [("key", "keys"), ("picture", "pictures"), ("label", "labels"), ("door", "doors"), ("box", "boxes"),
          ("letter", "letters"), ("window", "windows"), ("lamp", "lamps")]
PLACES = [("cabinet", "cabinets"), ("house", "houses"), ("garden", "gardens"), ("office", "offices"),
          ("kitchen", "kitchens"), ("shop", "shops")]
REFLEXIVE_VERBS = ["hurt", "saw", "praised", "blamed", "washed", "helped"]
TRANSITIVE = ["praised", "helped", "visited", "called", "thanked", "followed"]
STATES = ["lost", "broken", "old", "red", "small", "new", "clean", "open"]
ADVERBS = ["probably", "surely", "clearly", "always", "often"]
ADJ_ORDER = [["nice", "ugly", "fine", "lovely"], ["small", "big", "long", "short"], ["old", "new", "young"],
             ["red", "blue", "green", "white"], ["wooden", "metal", "silk", "glass"]]
OBJECTS = ["table", "chair", "dress", "lamp", "box", "bike"]
IRREGULAR = [("eaten", "ate"), ("seen", "saw"), ("taken", "took"), ("written", "wrote"), ("given", "gave"),
             ("broken", "broke")]
NAMES = ["Anna", "Tom", "Mary", "John", "Lisa", "Paul", "Emma", "Sam", "Kate", "Ben", "Nina", "Max"]
PETS = ["dog", "cat", "bird", "horse"]
PET_NAMES = ["Rex", "Bella", "Coco", "Milo", "Luna", "Oscar", "Daisy", "Rocky"]
FOODS = ["apple", "cake", "bread", "orange", "cookie", "pear"]


# --------------------------------------------------------------------------- grammaticality


def _agreement(rng: random.Random) -> tuple[str, str]:
    head, attractor = rng.choice(THINGS), rng.choice(PLACES)
    plural = rng.random() < 0.5
    subject = head[1] if plural else head[0]
    other = attractor[0] if plural else attractor[1]
    good, bad = ("were", "was") if plural else ("was", "were")
    start = f"The {subject} in the {other} {rng.choice(ADVERBS)}"
    state = rng.choice(STATES)
    return f"{start} {good} {state}", f"{start} {bad} {state}"


def _anaphor(rng: random.Random, relative: bool = False) -> tuple[str, str]:
    person, verb = rng.choice(PEOPLE), rng.choice(REFLEXIVE_VERBS)
    plural = rng.random() < 0.5
    subject = person[1] if plural else person[0]
    good, bad = ("themselves", person[2]) if plural else (person[2], "themselves")
    clause = f" who {rng.choice(TRANSITIVE)} the {rng.choice(ROLES)[1 - plural]}" if relative else ""
    start = f"The {subject}{clause} {verb}"
    return f"{start} {good}", f"{start} {bad}"


def _determiner(rng: random.Random) -> tuple[str, str]:
    noun, name = rng.choice(THINGS), rng.choice(NAMES)
    plural = rng.random() < 0.5
    near = rng.random() < 0.5
    if plural:
        good, bad = ("these", "this") if near else ("those", "that")
    else:
        good, bad = ("this", "these") if near else ("that", "those")
    word = noun[1] if plural else noun[0]
    verb = rng.choice(["saw", "found", "moved", "cleaned"])
    return f"{name} {verb} {good} {word}", f"{name} {verb} {bad} {word}"


def _irregular(rng: random.Random) -> tuple[str, str]:
    role, (part, past) = rng.choice(ROLES), rng.choice(IRREGULAR)
    obj = rng.choice(["the " + t[0] for t in THINGS] + ["the " + f for f in FOODS])
    start = f"The {role[0]} had"
    return f"{start} {part} {obj}", f"{start} {past} {obj}"


def _adjective_order(rng: random.Random) -> tuple[str, str]:
    slots = sorted(rng.sample(range(len(ADJ_ORDER)), 3))
    adjs = [rng.choice(ADJ_ORDER[s]) for s in slots]
    verb, obj = rng.choice(["bought", "painted", "found", "sold"]), rng.choice(OBJECTS)
    return f"I {verb} a {' '.join(adjs)} {obj}", f"I {verb} a {' '.join(reversed(adjs))} {obj}"


def _resumption(rng: random.Random) -> tuple[str, str]:
    person = rng.choice(PEOPLE)
    role = rng.choice(ROLES)
    pronoun = "him" if person[2] == "himself" else "her"
    start = f"This is the {person[0]} that the {role[0]} who was {rng.choice(['working', 'talking', 'waiting'])} " \
            f"in the {rng.choice(PLACES)[0]} {rng.choice(TRANSITIVE)}"
    return start, f"{start} {pronoun}"


BLIMP_KINDS = {
    "subject-verb agreement": ("distractor_agreement", "distractor_agreement_relational_noun",
                               lambda r: _agreement(r)),
    "anaphor agreement": ("anaphor_number_agreement", "anaphor_number_agreement", lambda r: _anaphor(r)),
    "determiner-noun agreement": ("determiner_noun_agreement", "determiner_noun_agreement_1",
                                  lambda r: _determiner(r)),
    "irregular forms": ("irregular_past_participle", "irregular_past_participle_verbs", lambda r: _irregular(r)),
}
DGL_KINDS = {
    "Anaphora": lambda r: _anaphor(r, relative=True),
    "Plural Attraction": _agreement,
    "Order of Adjectives": _adjective_order,
    "Intrusive Resumption": _resumption,
}


def _unique_pairs(rng: random.Random, make, n: int, seen: set[str]) -> list[tuple[str, str]]:
    """``n`` (good, bad) pairs from ``make`` whose good sentence is not in ``seen`` (updated)."""
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n:
        good, bad = make(rng)
        if good not in seen:
            seen.add(good)
            pairs.append((good, bad))
    return pairs


def blimp_rows(rng: random.Random, per_category: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for category, (fine, uid, make) in BLIMP_KINDS.items():
        for pair_id, (good, bad) in enumerate(_unique_pairs(rng, make, per_category, seen)):
            rows.append({"good_sentence": good + ".", "bad_sentence": bad + ".", "category": category,
                         "category_fine": fine, "blimp_UID": uid, "blimp_pairID": pair_id, "item_id": len(rows)})
    return rows


def dgl_rows(rng: random.Random, per_phenomenon: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for phenomenon, make in DGL_KINDS.items():
        for k, (good, bad) in enumerate(_unique_pairs(rng, make, per_phenomenon, seen)):
            rows.append({"item_id": len(rows), "phenomenon": phenomenon, "test_item": f"TS {k + 1}",
                         "original_condition": "grammatical" if k < per_phenomenon // 2 else "ungrammatical",
                         "sentence_grammatical": good, "sentence_ungrammatical": bad})
    return rows


# --------------------------------------------------------------------------- LAMBADA-style passages


def lambada_text(rng: random.Random) -> str:
    """A short story whose last word names someone or something from earlier in it."""
    a, b = rng.sample(NAMES, 2)
    kind = rng.randrange(4)
    if kind == 0:
        pet, name = rng.choice(PETS), rng.choice(PET_NAMES)
        place = rng.choice(PLACES)[0]
        return (f"{a} had a {pet} called {name}. Every morning {a} walked with the {pet} to the {place}. "
                f"One day the {pet} ran away, and {a} looked everywhere for {name}")
    if kind == 1:
        food = rng.choice(FOODS)
        return (f"{a} baked a {food} for the party. {b} had forgotten to bring anything. "
                f"When the guests arrived, everyone thanked {a} for the {food}")
    if kind == 2:
        thing = rng.choice(THINGS)[0]
        return (f"{a} lost a {thing} in the garden and asked {b} for help. After an hour {b} found it "
                f"under a stone and gave the {thing} back to {a}")
    role = rng.choice(ROLES)[0]
    return (f"{a} wanted to become a {role}. {b} laughed at the idea. Ten years later, {a} was the best "
            f"{role} in the town, and {b} had to admit that {a} was a great {role}")


def lambada_lines(rng: random.Random, n: int) -> list[str]:
    out, seen = [], set()
    while len(out) < n:
        text = lambada_text(rng)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


# --------------------------------------------------------------------------- digit matrices


def _matrix(rng: random.Random, ptype: str) -> list[list[list[int]]]:
    if ptype == "row_constant":
        cells = [[rng.randrange(10), rng.randrange(10)] for _ in range(3)]
        return [[list(cells[r]) for _ in range(3)] for r in range(3)]
    if ptype == "col_constant":
        cells = [[rng.randrange(10), rng.randrange(10)] for _ in range(3)]
        return [[list(cells[c]) for c in range(3)] for _ in range(3)]
    if ptype == "prog_size1":
        grid = []
        for _ in range(3):
            a, b = rng.randrange(8), rng.randrange(8)
            grid.append([[a + c, b + c] for c in range(3)])
        return grid
    if ptype == "dist3_diag1":
        cells = [[rng.randrange(10), rng.randrange(10)] for _ in range(3)]
        return [[list(cells[(c + r) % 3]) for c in range(3)] for r in range(3)]
    if ptype == "row_constant_permuted":  # each row shows the same two digits in any order
        grid = []
        for _ in range(3):
            a, b = rng.sample(range(10), 2)
            grid.append([[a, b] if rng.random() < 0.5 else [b, a] for _ in range(3)])
        return grid
    raise ValueError(ptype)


DIGIT_TYPES = {"row_constant": False, "col_constant": False, "prog_size1": False, "dist3_diag1": False,
               "row_constant_permuted": True}


def digit_problem(rng: random.Random, ptype: str) -> tuple[list, list, int]:
    """(grid with the answer in its last cell, 8 answer choices, index of the correct one)."""
    grid = _matrix(rng, ptype)
    answer = grid[2][2]
    key = (lambda c: tuple(sorted(c))) if DIGIT_TYPES[ptype] else tuple
    choices, seen = [answer], {key(answer)}
    pool = [cell for row in grid for cell in row]
    while len(choices) < 8:
        cand = list(rng.choice(pool)) if rng.random() < 0.5 else [rng.randrange(10), rng.randrange(10)]
        if rng.random() < 0.3:
            cand[rng.randrange(2)] = rng.randrange(10)
        if key(cand) not in seen:
            seen.add(key(cand))
            choices.append(cand)
    order = list(range(8))
    rng.shuffle(order)
    return grid, [choices[i] for i in order], order.index(0)


def digit_mat_problems(rng: random.Random, per_type: int) -> dict[str, dict[str, Any]]:
    out = {}
    for ptype, perm in DIGIT_TYPES.items():
        probs, choices, correct = [], [], []
        for _ in range(per_type):
            g, c, i = digit_problem(rng, ptype)
            probs.append(g)
            choices.append(c)
            correct.append(i)
        out[ptype] = {"prob": probs, "answer_choices": choices, "correct_ind": correct, "perm_invariant": perm}
    return out


def completed_matrix(grid: list) -> str:
    return render_matrix(grid) + render_cell(grid[2][2])[1:]


# --------------------------------------------------------------------------- CRT


def crt_item(rng: random.Random, condition: str) -> dict[str, str]:
    if condition == "crt1":
        x, y = rng.sample([t[0] for t in THINGS] + OBJECTS + FOODS, 2)
        more = rng.choice([1, 5, 10, 50, 100, 500])
        cost = more * rng.choice([0.05, 0.1, 0.2, 0.3])
        total = more + 2 * cost
        fmt = (lambda v: f"{v:.2f}") if more < 10 else (lambda v: f"{v:g}")
        question = (f"A {x} and a {y} together cost ${fmt(total)}. The {x} costs ${more} more than the {y}. "
                    f"How much does the {y} cost?")
        return {"question": question, "total_cost": fmt(total), "more": str(more),
                "correct": money_canonical(f"${cost:.2f}"), "intuitive": money_canonical(f"${total - more:.2f}"),
                "t": ""}
    if condition == "crt2":
        n, m = sorted(rng.sample([1, 2, 3, 4, 5, 6, 7, 8, 10, 20, 30, 40, 50, 60, 70, 80], 2))
        who, does, what = rng.choice([("machines", "make", "toys"), ("bakers", "bake", "cakes"),
                                      ("painters", "paint", "rooms"), ("printers", "print", "pages")])
        unit = rng.choice(["minutes", "hours", "days"])
        question = (f"How long does it take {n} {who} to {does} {n} {what}, if it takes {m} {who} {m} {unit} "
                    f"to {does} {m} {what}?")
        return {"question": question, "total_cost": "", "more": "", "correct": f"{m} {unit}",
                "intuitive": f"{n} {unit}", "t": ""}
    if condition == "crt3":
        days = rng.choice(range(4, 41, 2))
        what = rng.choice([("a virus is spreading in a city", "the whole city", "half of the city"),
                           ("a lake is covered by a patch of lilies", "the whole lake", "half of the lake"),
                           ("a rumour is spreading in a school", "the whole school", "half of the school")])
        question = (f"Every day, {what[0]} and the total doubles. If it takes {days} days to reach {what[1]}, "
                    f"how many days does it take to reach {what[2]}?")
        return {"question": question, "total_cost": "", "more": "", "correct": f"{days - 1} days",
                "intuitive": f"{days // 2} days", "t": f"{days} days"}
    raise ValueError(condition)


def crt_rows(rng: random.Random, per_condition: int) -> list[dict[str, Any]]:
    rows, seen = [], set()
    for condition in ("crt1", "crt2", "crt3"):
        k = 0
        while k < per_condition:
            item = crt_item(rng, condition)
            if item["question"] in seen:
                continue
            seen.add(item["question"])
            k += 1
            rows.append({"condition": condition, "item_id": k, **item})
    return rows


# --------------------------------------------------------------------------- training corpus


def training_corpus(rng: random.Random, exclude: set[str], n_grammar: int, n_stories: int, n_matrices: int,
                    n_crt: int, meta_fraction: float) -> list[str]:
    """Texts of the task domain; a ``meta_fraction`` of grammar and story items also in the metalinguistic form."""
    texts: list[str] = []
    makers = [m for _, _, m in BLIMP_KINDS.values()] + list(DGL_KINDS.values())
    while len(texts) < n_grammar:
        good, bad = rng.choice(makers)(rng)
        if good + "." in exclude or good in exclude:
            continue
        texts.append(good + ".")
        if rng.random() < meta_fraction:
            first = rng.random() < 0.5
            s1, s2 = (good + ".", bad + ".") if first else (bad + ".", good + ".")
            texts.append(GRAMMAR_META.format(s1=s1, s2=s2) + (" 1" if first else " 2"))
    stories = 0
    while stories < n_stories:
        text = lambada_text(rng)
        if text in exclude:
            continue
        stories += 1
        texts.append(text + ".")
        if rng.random() < meta_fraction:
            prefix, word = text.rsplit(" ", 1)
            texts.append(LAMBADA_META.format(prefix=prefix) + " " + word)
    for i in range(n_matrices):
        ptype = list(DIGIT_TYPES)[i % len(DIGIT_TYPES)]
        grid, _, _ = digit_problem(rng, ptype)
        text = completed_matrix(grid)
        if render_matrix(grid) not in exclude:
            texts.append(text)
    for i in range(n_crt):
        item = crt_item(rng, ("crt1", "crt2", "crt3")[i % 3])
        if item["question"] not in exclude:
            texts.append(CRT_PROMPT.format(question=item["question"]) + " " + item["correct"] + ".")
    rng.shuffle(texts)
    return texts
