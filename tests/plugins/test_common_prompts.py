"""plugins.common.prompts: the seed's extraction and evaluation prompts, and parse_answer."""

from __future__ import annotations

import unittest

from plugins.common.lirefs import FewShotItem, MMLUProItem
from plugins.common.prompts import TEMPLATES, build_prompt, option_letters, parse_answer, template_for

ITEM = MMLUProItem(index=0, question="What is the capital of Zorvania?", options=["Kelmar", "Vostra", "Dunn"],
                   answer="A", category="geography", memory_reason_score=0.2)
SHOTS = [
    FewShotItem(0, "What is the capital of Brelia?", ["Tam", "Sol"], "B", "geography",
                "A: Let's think step by step. The capital of Brelia is Sol. The answer is (B)."),
    FewShotItem(1, "How many ports does Brelia have?", ["12", "13", "14"], "C", "geography",
                "A: Let's think step by step. Brelia has 14 ports. The answer is (C)."),
]


class PromptTest(unittest.TestCase):
    def test_extraction_is_the_question_only(self):
        text = build_prompt(ITEM, "extraction")
        self.assertEqual(text, "Q: What is the capital of Zorvania?\n\nA: ")
        self.assertNotIn("Options", text)
        self.assertNotIn("Kelmar", text)
        self.assertEqual(build_prompt(ITEM, "extraction_llama"), "Q: What is the capital of Zorvania?\nA: ")

    def test_evaluation_has_lettered_options_and_the_few_shot_examples(self):
        text = build_prompt(ITEM, "evaluation", few_shot=SHOTS)
        self.assertTrue(text.startswith("Q: What is the capital of Brelia?\nOptions are:\n(A): Tam\n(B): Sol\n"
                                        "A: The answer is (B).\n\n"))
        self.assertIn("Q: How many ports does Brelia have?", text)
        self.assertIn("A: The answer is (C).\n\n", text)
        self.assertTrue(text.endswith("Q: What is the capital of Zorvania?\nOptions are:\n(A): Kelmar\n"
                                      "(B): Vostra\n(C): Dunn\n\nA: "))
        self.assertLess(text.index("Brelia"), text.index("Zorvania"))

    def test_switches(self):
        cot = build_prompt(ITEM, "evaluation", few_shot=SHOTS, cot=True)
        self.assertIn("The capital of Brelia is Sol. The answer is (B).", cot)
        self.assertTrue(cot.endswith("A: Let's think step by step. "))
        # the seed adds the CoT phrase only with few-shot examples
        self.assertTrue(build_prompt(ITEM, "evaluation", cot=True).endswith("\n\nA: "))
        self.assertIn("(A): Kelmar", build_prompt(ITEM, "extraction", options=True))
        self.assertNotIn("Options", build_prompt(ITEM, "evaluation", options=False))
        with self.assertRaises(ValueError):
            build_prompt(ITEM, "extraction", chat_template=True)
        with self.assertRaises(KeyError):
            build_prompt(ITEM, "nope")
        self.assertTrue(TEMPLATES["evaluation"].few_shot)
        self.assertFalse(TEMPLATES["extraction"].few_shot)
        self.assertEqual(template_for("extraction", "Meta-Llama-3-8B"), "extraction_llama")
        self.assertEqual(template_for("evaluation", "huginn-0125"), "evaluation")

    def test_chat_template(self):
        class Tok:
            chat_template = "x"

            def apply_chat_template(self, messages, tokenize, add_generation_prompt):
                assert not tokenize and add_generation_prompt
                return "<user>" + messages[0]["content"] + "<assistant>"

        text = build_prompt(ITEM, "extraction", chat_template=True, tokenizer=Tok())
        self.assertEqual(text, "<user>Q: What is the capital of Zorvania?\n\nA: <assistant>")

    def test_option_letters(self):
        self.assertEqual(option_letters(4), "ABCD")
        self.assertEqual(option_letters(10), "ABCDEFGHIJ")
        with self.assertRaises(ValueError):
            option_letters(11)

    def test_parse_answer(self):
        self.assertEqual(parse_answer("The answer is (C)."), "C")
        self.assertEqual(parse_answer("Let's think step by step. 3 + 4 = 7. The answer is (J)."), "J")
        self.assertEqual(parse_answer("so the answer is B"), "B")
        self.assertEqual(parse_answer("the answer is (A). Later: the answer is (B)."), "A")
        self.assertIsNone(parse_answer("I don't know."))
        self.assertIsNone(parse_answer("The answer is (K)."))
        self.assertIsNone(parse_answer(""))


if __name__ == "__main__":
    unittest.main()
