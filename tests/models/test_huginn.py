"""Tests of the clean-room Huginn-0125 model (models/huginn): tiny configs, CPU, a few seconds."""

from __future__ import annotations

import json
import math
import tempfile
import unittest
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModelForCausalLM

import models.huginn as huginn
from models.huginn import HuginnCache, HuginnConfig, HuginnForCausalLM, HuginnNumbering
from models.huginn.adapter import HuginnAdapter
from tests.support import limit_torch_threads, restore_torch_threads

# Tiny sizes: hidden 32, 2 heads, vocab 128, 1 prelude + 2 core + 1 coda blocks, 3 steps by default.
TINY = dict(
    n_embd=32,
    num_attention_heads=2,
    vocab_size=128,
    intermediate_size=48,
    n_layers_in_prelude=1,
    n_layers_in_recurrent_block=2,
    n_layers_in_coda=1,
    mean_recurrence=3,
    block_size=64,
)

# Per-block parameter names of the published SandwichBlock (recpre/raven_modeling_minimal.py).
PUBLISHED_BLOCK_PARAMS = (
    "norm_1.weight",
    "attn.Wqkv.weight",
    "attn.qk_bias",
    "attn.proj.weight",
    "norm_2.weight",
    "mlp.fc.weight",
    "mlp.proj.weight",
    "norm_3.weight",
    "norm_4.weight",
)


def published_weight_names(n_prelude: int, n_core: int, n_coda: int) -> list[str]:
    """Every parameter name of the published RavenForCausalLM (module names of its modeling file)."""
    names = ["transformer.wte.weight", "transformer.adapter.weight", "transformer.ln_f.weight", "lm_head.weight"]
    for stack, count in (("prelude", n_prelude), ("core_block", n_core), ("coda", n_coda)):
        names += [f"transformer.{stack}.{i}.{p}" for i in range(count) for p in PUBLISHED_BLOCK_PARAMS]
    return names


def published_config_json(**overrides: object) -> dict:
    """A config.json with the published keys (recpre/raven_config_minimal.json), resized to TINY."""
    cfg = {
        "name": "nebel-raven-3.5b",
        "architectures": ["RavenForCausalLM"],
        "auto_map": {
            "AutoConfig": "raven_config_minimal.RavenConfig",
            "AutoModelForCausalLM": "raven_modeling_minimal.RavenForCausalLM",
        },
        "torch_dtype": "float32",
        "transformers_version": "4.28.1",
        "hf_config": {"org": "tomg-group-umd", "name": "nebel-raven-3.5b"},
        "model_type": "huginn_raven",
        "block_size": 64,
        "vocab_size": 128,
        "padding_multiple": 4096,
        "tie_embeddings": True,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "n_embd": 32,
        "intermediate_size": 48,
        "bias": False,
        "architecture_class_name": "RecurrentGPT",
        "block_class_name": "SandwichBlock",
        "norm_class_name": "RMSNorm_llama",
        "norm_eps": 0.000001,
        "mlp_class_name": "GatedMLP",
        "nonlin_name": "SiLU",
        "init_strategy": "takase",
        "init_orthogonal": False,
        "state_init": "like-init",
        "injection_type": "linear",
        "n_layers_in_recurrent_block": 2,
        "mean_recurrence": 3,
        "sampling_scheme": "poisson-lognormal-filling",
        "mean_backprop_depth": 8,
        "n_layers_in_prelude": 1,
        "n_layers_in_coda": 1,
        "qk_bias": True,
        "activation_checkpoint_impl": "per-iteration",
    }
    cfg.update(overrides)
    return cfg


def random_published_state(seed: int = 0, with_lm_head: bool = True) -> dict[str, torch.Tensor]:
    """Random weights under the published names and shapes (plus the published RoPE buffer)."""
    g = torch.Generator().manual_seed(seed)
    e, h, inter, vocab = 32, 2, 48, 128
    hd = e // h

    def rnd(*shape: int, std: float = 0.1) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    shapes = {
        "norm_1.weight": (e,),
        "attn.Wqkv.weight": (3 * e, e),
        "attn.qk_bias": (2, 1, h, hd),
        "attn.proj.weight": (e, e),
        "norm_2.weight": (e,),
        "mlp.fc.weight": (2 * inter, e),
        "mlp.proj.weight": (e, inter),
        "norm_3.weight": (e,),
        "norm_4.weight": (e,),
    }
    state: dict[str, torch.Tensor] = {}
    for name in published_weight_names(1, 2, 1):
        if name == "lm_head.weight":
            continue
        if name == "transformer.wte.weight":
            state[name] = rnd(vocab, e, std=0.2)
        elif name == "transformer.adapter.weight":
            state[name] = rnd(e, 2 * e)
        elif name.endswith("norm_1.weight") or "norm_" in name or name.endswith("ln_f.weight"):
            state[name] = 1.0 + rnd(e, std=0.05)
        else:
            suffix = name.split(".", 3)[3]
            state[name] = rnd(*shapes[suffix])
    if with_lm_head:
        state["lm_head.weight"] = state["transformer.wte.weight"].clone()
    # The published model keeps its RoPE table as a persistent buffer.
    inv = 1.0 / (50_000 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    ang = torch.outer(torch.arange(64, dtype=torch.float32), inv)
    state["freqs_cis"] = torch.stack([ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]], dim=4)
    return state


def write_published_dir(path: Path, with_lm_head: bool = True) -> dict[str, torch.Tensor]:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(published_config_json(), indent=2))
    state = random_published_state(with_lm_head=with_lm_head)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path / "model.safetensors"), metadata={"format": "pt"})
    return state


def reference_logits(state: dict[str, torch.Tensor], ids: torch.Tensor, steps: int) -> torch.Tensor:
    """An independent functional forward from the paper's description (zero initial state)."""
    e, h = 32, 2
    hd = e // h
    eps = 1e-6

    def rms(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    seq = ids.shape[1]
    inv = 1.0 / (50_000 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    rot = torch.polar(torch.ones(seq, hd // 2), torch.outer(torch.arange(seq, dtype=torch.float32), inv))

    def rope(t: torch.Tensor) -> torch.Tensor:  # [B, S, H, hd], adjacent pairs as complex numbers
        tc = torch.view_as_complex(t.reshape(*t.shape[:-1], hd // 2, 2).contiguous())
        return torch.view_as_real(tc * rot[None, :, None, :]).flatten(-2)

    def block(x: torch.Tensor, p: str) -> torch.Tensor:
        a = rms(x, state[p + "norm_1.weight"])
        q, k, v = (a @ state[p + "attn.Wqkv.weight"].T).split(e, dim=-1)
        q = rope(q.view(*q.shape[:2], h, hd) + state[p + "attn.qk_bias"][0])
        k = rope(k.view(*k.shape[:2], h, hd) + state[p + "attn.qk_bias"][1])
        v = v.view(*v.shape[:2], h, hd)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hd)
        scores = scores.masked_fill(torch.ones(seq, seq, dtype=torch.bool).triu(1), float("-inf"))
        att = torch.einsum("bhqk,bkhd->bqhd", scores.softmax(-1), v).reshape(*x.shape)
        x = rms(att @ state[p + "attn.proj.weight"].T + x, state[p + "norm_2.weight"])
        gate, up = (rms(x, state[p + "norm_3.weight"]) @ state[p + "mlp.fc.weight"].T).chunk(2, dim=-1)
        m = (F.silu(gate) * up) @ state[p + "mlp.proj.weight"].T
        return rms(m + x, state[p + "norm_4.weight"])

    x = state["transformer.wte.weight"][ids] * math.sqrt(e)
    x = block(x, "transformer.prelude.0.")
    s = torch.zeros_like(x)
    for _ in range(steps):
        s = torch.cat([s, x], dim=-1) @ state["transformer.adapter.weight"].T
        s = block(block(s, "transformer.core_block.0."), "transformer.core_block.1.")
    y = rms(s, state["transformer.ln_f.weight"])
    y = rms(block(y, "transformer.coda.0."), state["transformer.ln_f.weight"])
    return y @ state["transformer.wte.weight"].T


setUpModule, tearDownModule = limit_torch_threads, restore_torch_threads


def tiny_model(seed: int = 0, **overrides: object) -> HuginnForCausalLM:
    torch.manual_seed(seed)
    return HuginnForCausalLM(HuginnConfig(**{**TINY, **overrides})).eval()


class TestLoadingPublishedLayout(unittest.TestCase):
    """A directory with the published config keys and weight names loads through the Auto classes."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = Path(cls.tmp.name) / "huginn-tiny"
        cls.state = write_published_dir(cls.dir)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.tmp.cleanup()

    def test_config_fields_and_model_type(self) -> None:
        config = AutoConfig.from_pretrained(self.dir, trust_remote_code=False)
        self.assertIsInstance(config, HuginnConfig)
        self.assertEqual(config.model_type, "huginn_raven")
        self.assertEqual((config.n_heads, config.num_attention_heads, config.head_dim), (2, 2, 16))
        self.assertEqual(config.hidden_size, 32)
        self.assertEqual(config.effective_expected_depth, 1 + 2 * 3 + 1)
        self.assertEqual(config.padded_vocab_size, 128)
        self.assertTrue(config.tie_word_embeddings)

    def test_every_published_name_is_a_parameter_and_loads(self) -> None:
        model, info = AutoModelForCausalLM.from_pretrained(
            self.dir, trust_remote_code=False, output_loading_info=True
        )
        self.assertIsInstance(model, HuginnForCausalLM)
        params = dict(model.named_parameters(remove_duplicate=False))
        for name in published_weight_names(1, 2, 1):
            self.assertIn(name, params, name)
            self.assertTrue(torch.equal(params[name].detach(), self.state[name]), name)
        self.assertEqual(set(params), set(published_weight_names(1, 2, 1)))
        self.assertEqual(list(info["missing_keys"]), [])
        self.assertEqual(list(info["unexpected_keys"]), [])  # the published freqs_cis buffer is recomputed
        self.assertIs(model.lm_head.weight, model.transformer.wte.weight)

    def test_tied_head_loads_without_lm_head_entry(self) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            state = write_published_dir(Path(tmp), with_lm_head=False)
            model = AutoModelForCausalLM.from_pretrained(tmp, trust_remote_code=False)
        self.assertTrue(torch.equal(model.lm_head.weight.detach(), state["transformer.wte.weight"]))

    def test_logits_match_independent_reference(self) -> None:
        model = AutoModelForCausalLM.from_pretrained(self.dir, trust_remote_code=False).eval()
        ids = torch.randint(0, 128, (2, 9), generator=torch.Generator().manual_seed(1))
        for steps in (1, 3):
            with torch.no_grad():
                got = model(ids, num_steps=steps, init_scale=0).logits
            want = reference_logits(self.state, ids, steps)
            torch.testing.assert_close(got, want, atol=2e-4, rtol=2e-4)


class TestNumberingAndHiddenStates(unittest.TestCase):
    def test_published_seed_indices(self) -> None:
        pub = HuginnNumbering(2, 4, 2, 32)
        self.assertEqual(pub.num_layers, 132)
        self.assertEqual(pub.alias(1), ("prelude", 1))
        self.assertEqual(pub.alias(66), ("core", 0, 16))
        self.assertEqual(pub.alias(127), ("core", 1, 31))
        self.assertEqual(pub.alias(129), ("core", 3, 31))
        self.assertEqual((pub.alias(130), pub.alias(131)), (("coda", 0), ("coda", 1)))
        self.assertEqual(huginn.block_step_to_index(0, 16), 66)
        self.assertEqual(huginn.index_to_block_step(2), ("core", 0, 0))
        for i in range(pub.num_layers):
            self.assertEqual(pub.index(pub.alias(i)), i)
            self.assertEqual(pub.parse_name(pub.name(i)), i)
        self.assertEqual(pub.name(66), "core.0@step16")
        with self.assertRaises(IndexError):
            pub.alias(132)

    def test_published_size_model_layers(self) -> None:
        with torch.device("meta"):  # 3.5B parameters, no memory
            model = HuginnForCausalLM(HuginnConfig())
        layers = HuginnAdapter().layers(model)
        self.assertEqual(len(layers), 132)
        self.assertEqual(
            [layers[i].name for i in (0, 1, 2, 66, 127, 129, 130, 131)],
            ["prelude.0", "prelude.1", "core.0@step0", "core.0@step16",
             "core.1@step31", "core.3@step31", "coda.0", "coda.1"],
        )
        self.assertIs(layers[66].block, model.transformer.core_block[0])
        self.assertEqual(layers[129].alias, ("core", 3, 31))

    def test_hidden_states_per_block_and_step(self) -> None:
        model = tiny_model()
        ids = torch.randint(0, 128, (2, 5))
        with torch.no_grad():
            out = model(ids, num_steps=4, init_scale=0, output_hidden_states=True)
        num = model.numbering(4)
        self.assertEqual(num.num_layers, 1 + 2 * 4 + 1)
        hs = out.hidden_states
        self.assertEqual(len(hs), 1 + num.num_layers)  # embed + every visit
        for t in hs:
            self.assertEqual(tuple(t.shape), (2, 5, 32))
        # embed is the sqrt(n_embd)-scaled embedding
        torch.testing.assert_close(hs[0], model.transformer.wte(ids) * math.sqrt(32))
        # the last core visit, normed by ln_f, is the published latent state; the last entry is raw (no final norm)
        torch.testing.assert_close(out.latent_states, model.transformer.ln_f(hs[1 + num.core_index(1, 3)]))
        final = model.lm_head(model.transformer.ln_f(hs[-1]))
        torch.testing.assert_close(final, out.logits)
        # steps are distinct states
        self.assertFalse(torch.allclose(hs[1 + num.core_index(0, 1)], hs[1 + num.core_index(0, 2)]))

    def test_adapter_layers(self) -> None:
        model = tiny_model()
        from models.layers import get_adapter

        adapter = get_adapter(model)
        self.assertIsInstance(adapter, HuginnAdapter)
        layers = adapter.layers(model)
        self.assertEqual(len(layers), 1 + 2 * 3 + 1)  # config.mean_recurrence = 3
        self.assertEqual(
            [layer.name for layer in layers[:4]], ["prelude.0", "core.0@step0", "core.1@step0", "core.0@step1"]
        )
        self.assertEqual(layers[-1].name, "coda.0")
        self.assertEqual(layers[4].alias, ("core", 1, 1))
        self.assertIs(layers[1].block, layers[3].block)
        self.assertIs(adapter.embedding(model), model.embedding_scale)
        self.assertIs(adapter.final_norm(model), model.transformer.ln_f)
        self.assertEqual(len(HuginnAdapter(num_steps=5).layers(model)), 1 + 2 * 5 + 1)
        self.assertFalse(any(layer.active() for layer in layers))  # nothing runs between forwards


class TestVisitHooks(unittest.TestCase):
    def test_hook_fires_only_at_its_step_and_matches_hidden_state(self) -> None:
        model = tiny_model()
        layers = HuginnAdapter().layers(model)
        target = next(layer for layer in layers if layer.alias == ("core", 1, 2))
        seen: list[torch.Tensor] = []

        def record(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
            if target.active():
                seen.append(output.detach().clone())

        handle = target.block.register_forward_hook(record)
        try:
            with torch.no_grad():
                out = model(torch.randint(0, 128, (1, 6)), num_steps=3, init_scale=0, output_hidden_states=True)
        finally:
            handle.remove()
        self.assertEqual(len(seen), 1)
        torch.testing.assert_close(seen[0], out.hidden_states[1 + target.index])

    def test_steering_one_visit_changes_only_later_states(self) -> None:
        model = tiny_model()
        ids = torch.randint(0, 128, (1, 6))
        layer = HuginnAdapter().layers(model)[3]  # core.0@step1
        self.assertEqual(layer.alias, ("core", 0, 1))
        with torch.no_grad():
            base = model(ids, num_steps=3, init_scale=0, output_hidden_states=True).hidden_states
        delta = torch.full((32,), 0.5)

        def steer(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
            return output + delta if layer.active() else None

        handle = layer.block.register_forward_hook(steer)
        try:
            with torch.no_grad():
                steered = model(ids, num_steps=3, init_scale=0, output_hidden_states=True).hidden_states
        finally:
            handle.remove()
        for k in range(1 + layer.index):  # embed .. layer index-1 untouched
            torch.testing.assert_close(steered[k], base[k])
        torch.testing.assert_close(steered[1 + layer.index], base[1 + layer.index] + delta)
        self.assertFalse(torch.allclose(steered[-1], base[-1]))

    def test_attention_and_mlp_visits_are_tracked(self) -> None:
        model = tiny_model()
        layers = HuginnAdapter().layers(model)
        target = layers[4]  # core.1@step1
        calls = {"attn": 0, "mlp": 0}

        def counter(kind: str):
            def hook(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
                if target.active():
                    calls[kind] += 1

            return hook

        handles = [
            target.attention.register_forward_hook(counter("attn")),
            target.mlp.register_forward_hook(counter("mlp")),
        ]
        try:
            with torch.no_grad():
                model(torch.randint(0, 128, (1, 4)), num_steps=3, init_scale=0)
        finally:
            for h in handles:
                h.remove()
        self.assertEqual(calls, {"attn": 1, "mlp": 1})


class TestWithLatentrunHooks(unittest.TestCase):
    """The shared capture/steering context managers address Huginn layers through HuginnAdapter."""

    def setUp(self) -> None:
        try:
            from models.capture import capture
            from models.steering import steer
        except ImportError as err:  # pragma: no cover - the hooks modules are built alongside
            self.skipTest(f"hooks not available: {err}")
        self.capture, self.steer = capture, steer

    def test_capture_all_layers_equals_hidden_states(self) -> None:
        model = tiny_model()
        ids = torch.randint(1, 128, (2, 5))
        with torch.no_grad():
            ref = model(ids, num_steps=3, init_scale=0, output_hidden_states=True).hidden_states
            with self.capture(model, None, reduction="last") as cap:
                model(ids, num_steps=3, init_scale=0)
        self.assertEqual(sorted(k for k in cap.values if k != "embed"), list(range(1 + 2 * 3 + 1)))
        for index in range(1 + 2 * 3 + 1):
            torch.testing.assert_close(cap.values[index], ref[1 + index][:, -1])
        with torch.no_grad(), self.capture(model, ["embed"], reduction="last") as cap:
            model(ids, num_steps=3, init_scale=0)
        torch.testing.assert_close(cap.values["embed"], ref[0][:, -1])  # the scaled embedding

    def test_steer_by_alias_acts_at_one_step(self) -> None:
        model = tiny_model()
        ids = torch.randint(1, 128, (1, 5))
        with torch.no_grad():
            base = model(ids, num_steps=3, init_scale=0, output_hidden_states=True).hidden_states
            with self.steer(model, [("core", 0, 1)], torch.ones(32), scale=2.0):
                steered = model(ids, num_steps=3, init_scale=0, output_hidden_states=True).hidden_states
        index = model.numbering().core_index(0, 1)
        torch.testing.assert_close(steered[index], base[index])  # layer index-1 (= core.1@step0) untouched
        torch.testing.assert_close(steered[1 + index], base[1 + index] + 2.0 / math.sqrt(32))


class TestRecurrenceAndState(unittest.TestCase):
    def test_more_steps_change_output(self) -> None:
        model = tiny_model()
        ids = torch.randint(0, 128, (1, 6))
        with torch.no_grad():
            few = model(ids, num_steps=1, init_scale=0).logits
            many = model(ids, num_steps=6, init_scale=0).logits
        self.assertFalse(torch.allclose(few, many, atol=1e-4))

    def test_default_steps_is_mean_recurrence(self) -> None:
        model = tiny_model()
        ids = torch.randint(0, 128, (1, 4))
        with torch.no_grad():
            default = model(ids, init_scale=0).logits
            three = model(ids, num_steps=3, init_scale=0).logits
            pair = model(ids, num_steps=torch.tensor([2, 1]), init_scale=0).logits
        torch.testing.assert_close(default, three)
        torch.testing.assert_close(pair, three)

    def test_init_scale_zero_is_deterministic_and_seeds_reproduce(self) -> None:
        model = tiny_model()
        ids = torch.randint(0, 128, (1, 5))
        with torch.no_grad():
            a = model(ids, num_steps=2, init_scale=0).logits
            b = model(ids, num_steps=2, init_scale=0).logits
            self.assertTrue(torch.equal(a, b))
            r1 = model(ids, num_steps=2).logits
            r2 = model(ids, num_steps=2).logits
            self.assertFalse(torch.equal(r1, r2))  # the random initial state differs
            g1 = model(ids, num_steps=2, generator=torch.Generator().manual_seed(7)).logits
            g2 = model(ids, num_steps=2, generator=torch.Generator().manual_seed(7)).logits
            self.assertTrue(torch.equal(g1, g2))
            torch.manual_seed(3)
            s1 = model(ids, num_steps=2).logits
            torch.manual_seed(3)
            s2 = model(ids, num_steps=2).logits
            self.assertTrue(torch.equal(s1, s2))
        state = model.initialize_state(torch.zeros(1, 4, 32), scale=1.0, generator=torch.Generator().manual_seed(0))
        std = model.config.init_values["std"] * math.sqrt(32)
        self.assertLessEqual(float(state.abs().max()), 3 * std + 1e-6)  # truncated at 3 sigma

    def test_labels_are_aligned_as_published_or_shifted_on_request(self) -> None:
        model = tiny_model()
        ids = torch.randint(0, 128, (2, 6))
        out = model(ids[:, :-1], labels=ids[:, 1:], num_steps=2, init_scale=0)  # published convention
        want = F.cross_entropy(out.logits.reshape(-1, 128), ids[:, 1:].reshape(-1))
        torch.testing.assert_close(out.loss, want)
        # transformers convention (labels = input_ids, padding as -100) is recognised and shifted
        padded_labels = ids.clone()
        padded_labels[0, -1] = -100
        hf = model(ids, labels=padded_labels, num_steps=2, init_scale=0)
        hf_want = F.cross_entropy(
            hf.logits[:, :-1].reshape(-1, 128), padded_labels[:, 1:].reshape(-1), ignore_index=-100
        )
        torch.testing.assert_close(hf.loss, hf_want)
        forced = model(ids, labels=ids, shift_labels=True, num_steps=2, init_scale=0)
        forced_want = F.cross_entropy(forced.logits[:, :-1].reshape(-1, 128), ids[:, 1:].reshape(-1))
        torch.testing.assert_close(forced.loss, forced_want)
        # transformers' pre-shifted form: shift_labels = labels[1:] padded with -100
        pre = model(ids, shift_labels=F.pad(ids[:, 1:], (0, 1), value=-100), num_steps=2, init_scale=0)
        torch.testing.assert_close(pre.loss, forced.loss)
        out.loss.backward()
        self.assertIsNotNone(model.transformer.core_block[0].attn.Wqkv.weight.grad)


class TestCacheAndGenerate(unittest.TestCase):
    def test_cache_equals_no_cache(self) -> None:
        model = tiny_model()
        ids = torch.randint(0, 128, (2, 8))
        with torch.no_grad():
            full = model(ids, num_steps=3, init_scale=0).logits
            cache = HuginnCache()
            pre = model(ids[:, :5], num_steps=3, init_scale=0, past_key_values=cache, use_cache=True)
            # one entry per block visit: prelude + core x steps + coda
            self.assertEqual(len(cache.layers), 1 + 2 * 3 + 1)
            parts = [pre.logits]
            for t in range(5, 8):
                step = model(ids[:, t : t + 1], num_steps=3, init_scale=0, past_key_values=cache, use_cache=True)
                parts.append(step.logits)
            two = model(ids[:, :6], num_steps=3, init_scale=0)  # a 2-token chunk after a cached prefix
        torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)
        self.assertEqual(cache.get_seq_length(), 8)
        torch.testing.assert_close(two.logits, full[:, :6], atol=1e-5, rtol=1e-5)

    def test_cache_chunked_prefill(self) -> None:
        model = tiny_model()
        ids = torch.randint(0, 128, (1, 9))
        with torch.no_grad():
            full = model(ids, num_steps=2, init_scale=0).logits
            cache = HuginnCache()
            a = model(ids[:, :4], num_steps=2, init_scale=0, past_key_values=cache, use_cache=True).logits
            b = model(ids[:, 4:], num_steps=2, init_scale=0, past_key_values=cache, use_cache=True).logits
        torch.testing.assert_close(torch.cat([a, b], dim=1), full, atol=1e-5, rtol=1e-5)

    def test_changing_num_steps_with_a_cache_is_an_error(self) -> None:
        model = tiny_model()
        ids = torch.randint(0, 128, (1, 4))
        cache = HuginnCache()
        with torch.no_grad():
            model(ids, num_steps=2, init_scale=0, past_key_values=cache, use_cache=True)
            with self.assertRaises(ValueError):
                model(ids[:, :1], num_steps=3, init_scale=0, past_key_values=cache, use_cache=True)

    def test_generate_with_num_steps(self) -> None:
        model = tiny_model()
        ids = torch.randint(1, 128, (2, 5))  # no pad id 0: generate would infer a mask from it
        kw = dict(max_new_tokens=5, do_sample=False, init_scale=0, pad_token_id=0)
        cached = model.generate(ids, num_steps=4, **kw)
        uncached = model.generate(ids, num_steps=4, use_cache=False, **kw)
        self.assertEqual(tuple(cached.shape), (2, 10))
        self.assertTrue(torch.equal(cached, uncached))
        # the generated tokens are the argmax of the model run with that many steps
        with torch.no_grad():
            logits = model(cached[:, :-1], num_steps=4, init_scale=0).logits
        self.assertTrue(torch.equal(logits[:, 4:].argmax(-1), cached[:, 5:]))
        fewer = model.generate(ids, num_steps=1, **kw)
        self.assertEqual(tuple(fewer.shape), (2, 10))

    def test_left_padding_matches_unpadded(self) -> None:
        model = tiny_model()
        short = torch.randint(1, 128, (1, 4))
        long = torch.randint(1, 128, (1, 7))
        batch = torch.cat([torch.cat([torch.zeros(1, 3, dtype=torch.long), short], dim=1), long])
        mask = torch.ones_like(batch)
        mask[0, :3] = 0
        with torch.no_grad():
            padded = model(batch, attention_mask=mask, num_steps=3, init_scale=0).logits
            alone = model(short, num_steps=3, init_scale=0).logits
            alone_long = model(long, num_steps=3, init_scale=0).logits
        self.assertTrue(torch.isfinite(padded).all())
        torch.testing.assert_close(padded[0, -1], alone[0, -1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(padded[1], alone_long[0], atol=1e-5, rtol=1e-5)
        # generate on the padded batch continues the short prompt exactly as alone
        kw = dict(max_new_tokens=3, do_sample=False, num_steps=3, init_scale=0, pad_token_id=0)
        gen_batch = model.generate(batch, attention_mask=mask, **kw)
        gen_alone = model.generate(short, **kw)
        self.assertTrue(torch.equal(gen_batch[0, 7:], gen_alone[0, 4:]))

    def test_return_dict_false_and_output_details(self) -> None:
        model = tiny_model()
        ids = torch.randint(0, 128, (1, 3))
        with torch.no_grad():
            tup = model(ids, num_steps=1, init_scale=0, return_dict=False)
            head = model(
                ids, num_steps=1, init_scale=0, output_details={"return_head": True, "return_stats": True}
            )
        self.assertIsInstance(tup, tuple)
        self.assertEqual(tuple(head.hidden_states.shape), (1, 3, 32))  # published: final-normed output
        self.assertIn("entropy", head.stats)


if __name__ == "__main__":
    unittest.main()
