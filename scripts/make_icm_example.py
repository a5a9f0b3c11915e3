"""Make the icm_label example: an arithmetic model that never saw a labelled claim, and claims to label.

    nice -n 10 python scripts/make_icm_example.py            # data + model (~6 CPU-minutes, 1 thread)
    python scripts/make_icm_example.py --data-only           # only the data files

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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plugins.icm_label.arithmetic import fact_texts, split_questions, verification_claims  # noqa: E402

SEED = 0
DATA = ROOT / "workspace.example" / "datasets" / "icm" / "arithmetic"
MODEL = ROOT / "workspace.example" / "transformers" / "tiny-icm-arith"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-only", action="store_true")
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()
    make_data()
    if not args.data_only:
        make_model(args.steps)


if __name__ == "__main__":
    main()
