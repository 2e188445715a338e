"""Hypernetworks on the tiny SD1 model: create in A1111's layout, train, load back through our loader."""

from __future__ import annotations

import pytest
import torch

from modules import hypernetworks
from modules.errors import ValidationError
from modules.params_train import CreateHypernetworkParams, TrainHypernetworkParams
from modules.state import JobState
from modules.training import hypernetwork
from tests.training.conftest import assert_bit_exact, fixed_loss, snapshot


def test_create_validates_and_writes_a1111_keys(runtime):
    path = hypernetwork.create_hypernetwork(runtime, CreateHypernetworkParams(
        name="toyhn", enable_sizes=[32, 64], layer_structure="1, 2, 1", activation_func="relu",
        add_layer_norm=True, use_dropout=True, dropout_structure="0, 0.1, 0"))
    data = torch.load(path, weights_only=True)
    assert sorted(k for k in data if isinstance(k, int)) == [32, 64]
    assert set(data[32][0]) == {"linear.0.weight", "linear.0.bias", "linear.2.weight", "linear.2.bias",
                                "linear.4.weight", "linear.4.bias", "linear.5.weight", "linear.5.bias"}
    assert data["layer_structure"] == [1.0, 2.0, 1.0] and data["activation_func"] == "relu"
    assert data["is_layer_norm"] is True and data["dropout_structure"] == [0.0, 0.1, 0.0] and data["step"] == 0
    assert runtime.hypernetworks.get("toyhn").layers[32][0].mlp is not None  # our loader reads it
    for bad, field in ((dict(layer_structure="2, 1"), "layer_structure"), (dict(activation_func="nope"),
                       "activation_func"), (dict(use_dropout=True, dropout_structure="0, 1.5, 0"),
                       "dropout_structure"), (dict(name="a/b"), "name")):
        with pytest.raises(ValidationError, match=field):
            hypernetwork.create_hypernetwork(runtime, CreateHypernetworkParams(
                **{"name": "other", "enable_sizes": [32], **bad}))


def test_training_lowers_loss_and_loads_back(runtime, toy_dataset):
    path = hypernetwork.create_hypernetwork(runtime, CreateHypernetworkParams(name="toyhn", enable_sizes=[32]))
    model = runtime.models.current
    before = snapshot(model)
    layers, _, _ = hypernetwork.load_for_training(path)
    with hypernetwork.installed(model, layers):
        loss_before = fixed_loss(runtime, toy_dataset, "a photo of toy")
    params = TrainHypernetworkParams(hypernetwork_name="toyhn", learn_rate="0.002", data_root=str(toy_dataset),
                                     training_width=64, training_height=64, steps=8, create_image_every=0,
                                     save_hypernetwork_every=4, template_filename="hypernetwork.txt", seed=2)
    result = hypernetwork.run_training(runtime, params, JobState())
    assert result.step == 8 and len(result.losses) == 8
    assert_bit_exact(before, model)  # no hooks left behind, weights untouched
    layers, _, step = hypernetwork.load_for_training(path)
    assert step == 8
    with hypernetwork.installed(model, layers):
        assert fixed_loss(runtime, toy_dataset, "a photo of toy") < loss_before
    # The file is what our loader applies at generation time: same outputs as the trained modules.
    loaded = runtime.hypernetworks.get("toyhn")
    x = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(0))
    for slot in (0, 1):
        layers[32][slot].eval()
        assert torch.allclose(loaded.layers[32][slot](x), layers[32][slot](x), atol=1e-6)
    copies = sorted(p.name for p in (runtime.paths.data_dir / "textual_inversion").rglob("hypernetworks/*.pt"))
    assert copies == ["toyhn-4.pt", "toyhn-8.pt"]
    hypernetworks.apply(model, [])
