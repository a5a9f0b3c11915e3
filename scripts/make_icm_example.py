"""Make the icm_label example: an arithmetic model that never saw a labelled claim, and claims to label.

    nice -n 10 python scripts/make_icm_example.py            # data + model (~6 CPU-minutes, 1 thread)
    python scripts/make_icm_example.py --data-only           # only the data files
    nice -n 10 python scripts/make_icm_example.py --relations --steps 600   # tiny-icm-arith-rel (an experiment, see
                                                             # docs/plugins/icm_label.md; not committed)

Writes (committed; CI never reruns this):

* ``workspace.example/datasets/icm/arithmetic/train_gsm8k.json`` and ``test_gsm8k.json`` —
  GSM8K-verification-style claims ``a + b = c.`` (4 candidate solutions per question, one or
  two of them right) in the published ``train_*.json`` format, gold labels for reporting;
* ``workspace.example/transformers/tiny-icm-arith`` — a 4-layer Llama-style model pretrained
  with ``models.training`` on true sums of single digits in five phrasings. The words
  ``True`` and ``False`` never occur in its training text.

Seed, steps and losses go to the model's ``training_log.json``; the numbers are copied into
workspace.example/README.md.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plugins.icm_label.arithmetic import fact_texts, split_questions, verification_claims  # noqa: E402

SEED = 0
DATA = ROOT / "workspace.example" / "datasets" / "icm" / "arithmetic"
MODEL = ROOT / "workspace.example" / "transformers" / "tiny-icm-arith"
MODEL_REL = ROOT / "workspace.example" / "transformers" / "tiny-icm-arith-rel"
FACT_PASSES_REL, LABELLED_TEXTS_REL = 12, 250  # about one third of the characters are sum facts
TEMPLATE = "Question: {question}\nClaim: {choice}\nI think this claim is "  # the gsm8k testbed's prompt


def _near_miss(rng: random.Random, right: int, confusable: int, top: int) -> int:
    """A wrong final number: off by one or two, or a confusable value (as ``wrong_answer`` does for sums)."""
    options = {right - 2, right - 1, right + 1, right + 2, confusable} - {right}
    return rng.choice(sorted(v for v in options if 0 <= v <= top))


RELATIONS = ("difference", "larger", "smaller", "after", "before")


def relation_question(rng: random.Random, kind: str) -> tuple[int, int, int, Any]:
    """A question of one non-sum relation: ``(right answer, confusable wrong answer, largest value, render)``.

    Differences ``c - b = a`` over the numbers of the single-digit sums, the larger and the smaller of two
    digits, successor and predecessor; ``render(v)`` gives ``(question, claim with final number v)``.
    """
    if kind == "difference":
        a, b = rng.randrange(10), rng.randrange(10)
        c = a + b
        return a, c + b, 18, lambda v: (f"What is {c} - {b}?", f"{c} - {b} = {v}.")
    if kind in ("larger", "smaller"):
        a, b = rng.sample(range(10), 2)
        hi, lo = max(a, b), min(a, b)
        right, other = (hi, lo) if kind == "larger" else (lo, hi)
        return right, other, 9, lambda v: (f"What is the {kind} of {a} and {b}?", f"The {kind} of {a} and {b} is {v}.")
    a = rng.randrange(1, 18)
    right, other = (a + 1, a - 1) if kind == "after" else (a - 1, a + 1)
    return right, other, 18, lambda v: (f"What comes {kind} {a}?", f"{kind.capitalize()} {a} comes {v}.")


def relation_claims(rng: random.Random, kind: str, per_question: int) -> list[tuple[str, str, int]]:
    """``per_question`` claims ``(question, claim, label)`` on one question; each true with p = 1/2, a false one
    differing from the true one only in its final number."""
    right, other, top, render = relation_question(rng, kind)
    out = []
    for _ in range(per_question):
        label = rng.random() < 0.5
        out.append((*render(right if label else _near_miss(rng, right, other, top)), int(label)))
    return out


def labelled_relation_texts(rng: random.Random, n_texts: int) -> list[str]:
    """Many-shot runs of labelled non-sum claims laid out as ICM's demonstrations (``{prompt}True\n\n``).

    Each run holds 2 to 24 claims; half the runs keep one relation, half mix them; half the runs give
    each question 4 candidate claims in a row (like the example's consistency groups), the others one.
    Sums are never labelled.
    """
    out = []
    for _ in range(n_texts):
        n = rng.randint(2, 24)
        one_kind = rng.choice(RELATIONS) if rng.random() < 0.5 else None
        per_question = 4 if rng.random() < 0.5 else 1
        claims: list[tuple[str, str, int]] = []
        while len(claims) < n:
            claims += relation_claims(rng, one_kind or rng.choice(RELATIONS), per_question)
        out.append("".join(TEMPLATE.format(question=q, choice=c) + ("True" if y else "False") + "\n\n"
                           for q, c, y in claims[:n]))
    return out


def make_data() -> None:
    rng = random.Random(SEED)
    train_q, test_q = split_questions(rng, 12, 25)
    DATA.mkdir(parents=True, exist_ok=True)
    for name, questions, start in (("train_gsm8k.json", train_q, 0), ("test_gsm8k.json", test_q, 1000)):
        claims = verification_claims(questions, rng, start_id=start)
        (DATA / name).write_text(json.dumps(claims, indent=1) + "\n")
        print(f"{DATA / name}: {len(claims)} claims, {sum(c['label'] for c in claims)} true")


def make_model(steps: int) -> None:
    import torch
    from transformers import LlamaConfig

    from models.training import train_tiny, train_tokenizer

    texts = fact_texts(random.Random(SEED))
    assert not any("True" in t or "False" in t for t in texts), "the pretraining text must never label a claim"
    tokenizer = train_tokenizer(texts, vocab_size=400, kind="bpe", model_max_length=2048)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=320, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
                         tie_word_embeddings=True)
    torch.set_num_threads(1)
    train_tiny(config, texts, steps=steps, seed=SEED, out_dir=MODEL, tokenizer=tokenizer, lr=3e-3, batch_size=16,
               seq_len=128, warmup_steps=30, num_threads=1, log_every=25, overwrite=True)
    log = json.loads((MODEL / "training_log.json").read_text())
    print(f"{MODEL}: {steps} steps, {log['seconds']:.0f}s, loss {log['losses'][0]['loss']:.3f} -> "
          f"{log['losses'][-1]['loss']:.3f}")


def make_relations_model(steps: int, seq_len: int) -> None:
    """The second example model: true sums (unlabelled, as for tiny-icm-arith) plus labelled claims of
    other relations in the ICM prompt layout, so that the words True/False and a many-shot label pattern
    exist — but never for a sum."""
    import torch
    from transformers import LlamaConfig

    from models.training import train_tiny, train_tokenizer

    rng = random.Random(SEED)
    facts = fact_texts(rng, passes=FACT_PASSES_REL)
    labelled = labelled_relation_texts(rng, LABELLED_TEXTS_REL)
    assert not any(" + " in t or "sum" in t for t in labelled), "a sum must never be labelled"
    assert not any("True" in t or "False" in t for t in facts)
    texts = facts + labelled
    rng.shuffle(texts)
    tokenizer = train_tokenizer(texts, vocab_size=400, kind="bpe", model_max_length=2048)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=320, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
                         tie_word_embeddings=True)
    torch.set_num_threads(1)
    train_tiny(config, texts, steps=steps, seed=SEED, out_dir=MODEL_REL, tokenizer=tokenizer, lr=3e-3,
               batch_size=max(1, 4096 // seq_len), seq_len=seq_len, warmup_steps=30, num_threads=1, log_every=25,
               overwrite=True)
    log = json.loads((MODEL_REL / "training_log.json").read_text())
    print(f"{MODEL_REL}: {len(facts)} fact texts + {len(labelled)} labelled-relation texts, {steps} steps, "
          f"{log['seconds']:.0f}s, loss {log['losses'][0]['loss']:.3f} -> {log['losses'][-1]['loss']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-only", action="store_true")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--relations", action="store_true",
                        help="make tiny-icm-arith-rel (sums unlabelled + labelled claims of other relations)")
    parser.add_argument("--seq-len", type=int, default=256,
                        help="training window of --relations (batch: 4096 tokens)")
    args = parser.parse_args()
    make_data()
    if args.data_only:
        return
    if args.relations:
        make_relations_model(args.steps, args.seq_len)
    else:
        make_model(args.steps)


if __name__ == "__main__":
    main()
