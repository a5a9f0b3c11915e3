"""Layer discovery and the one layer numbering, for every built-in architecture."""

from __future__ import annotations

import unittest
from unittest import mock

import torch

from models import layers as layers_mod
from models.layers import AdapterError, Layer, get_adapter, get_layers, hidden_size, resolve_layer
from tests.models.tiny_models import ARCHITECTURES, HIDDEN, N_LAYERS, tiny_model


class ToyBlock(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.lin(x)


class ToyModel(torch.nn.Module):
    """A model no built-in adapter knows: an embedding and two custom blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(10, 4)
        self.stack = torch.nn.ModuleList([ToyBlock(), ToyBlock()])

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.emb(input_ids)
        for block in self.stack:
            h = block(h)
        return h


class ToyAdapter:
    name = "toy"

    def matches(self, model) -> bool:
        return isinstance(model, ToyModel)

    def embedding(self, model):
        return model.emb

    def layers(self, model) -> list[Layer]:
        return [Layer(i, f"toy.{i}", b, None, b.lin) for i, b in enumerate(model.stack)]

    def final_norm(self, model):
        return None


class LayersTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.models = {arch: tiny_model(arch) for arch in ARCHITECTURES}

    def test_every_architecture_has_its_blocks_in_order(self) -> None:
        expected = {"llama": "llama", "mistral": "llama", "qwen2": "llama", "gemma": "llama", "gpt2": "gpt2",
                    "gpt_neox": "gpt_neox", "olmo": "olmo", "olmo2": "olmo"}
        for arch, model in self.models.items():
            with self.subTest(arch=arch):
                adapter = get_adapter(model)
                self.assertEqual(adapter.name, expected[arch])
                found = get_layers(model)
                self.assertEqual([layer.index for layer in found], list(range(N_LAYERS)))
                self.assertEqual([layer.name for layer in found], [f"blocks.{i}" for i in range(N_LAYERS)])
                for layer in found:
                    self.assertIsNotNone(layer.attention)
                    self.assertIsNotNone(layer.mlp)
                    self.assertIn(layer.attention, list(layer.block.modules()))
                self.assertIsInstance(adapter.embedding(model), torch.nn.Embedding)
                self.assertIsNotNone(adapter.final_norm(model))
                self.assertEqual(hidden_size(model), HIDDEN)

    def test_base_model_without_lm_head_is_found_too(self) -> None:
        base = self.models["llama"].model
        self.assertEqual(len(get_layers(base)), N_LAYERS)

    def test_resolve_by_index_name_negative_and_errors(self) -> None:
        model = self.models["gpt2"]
        found = get_layers(model)
        self.assertIs(resolve_layer(model, 1).block, found[1].block)
        self.assertIs(resolve_layer(model, "blocks.2").block, found[2].block)
        self.assertIs(resolve_layer(model, -1).block, found[-1].block)
        self.assertIs(resolve_layer(model, "1").block, found[1].block)
        with self.assertRaisesRegex(AdapterError, "out of range"):
            resolve_layer(model, N_LAYERS)
        with self.assertRaisesRegex(AdapterError, "no layer"):
            resolve_layer(model, "blocks.99")

    def test_unknown_model_is_a_clear_error(self) -> None:
        with self.assertRaisesRegex(AdapterError, "no layer adapter matches ToyModel.*latentrun_model_adapters"):
            get_adapter(ToyModel())

    def test_plugin_adapters_are_asked_first(self) -> None:
        with mock.patch.object(layers_mod, "plugin_adapters", return_value=[ToyAdapter()]):
            model = ToyModel()
            self.assertEqual(get_adapter(model).name, "toy")
            self.assertEqual([layer.name for layer in get_layers(model)], ["toy.0", "toy.1"])

    def test_plugin_manager_results_are_flattened(self) -> None:
        class FakeHook:
            def latentrun_model_adapters(self):
                return [[ToyAdapter()], [], None]

        class FakePM:
            hook = FakeHook()

        fake = mock.MagicMock()
        fake.get_plugin_manager.return_value = FakePM()
        with mock.patch.dict("sys.modules", {"runner.pluginmanager": fake}):
            adapters = layers_mod.plugin_adapters()
        self.assertEqual([a.name for a in adapters], ["toy"])

    def test_alias_resolution(self) -> None:
        model = ToyModel()

        class AliasAdapter(ToyAdapter):
            def layers(self, model):
                return [Layer(i, f"toy.{i}", b, None, None, alias=("toy", i)) for i, b in enumerate(model.stack)]

        with mock.patch.object(layers_mod, "plugin_adapters", return_value=[AliasAdapter()]):
            self.assertEqual(resolve_layer(model, ("toy", 1)).index, 1)


if __name__ == "__main__":
    unittest.main()
