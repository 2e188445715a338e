"""ModelPatcher: deltas applied in fp32, restored bit-exactly, skipped when the patch set is unchanged."""

from __future__ import annotations

import pytest
import torch

from modules.model_patcher import ModelPatcher, PatchError


def _net(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Conv2d(3, 2, 3)).to(dtype)


def _snapshot(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def test_apply_and_restore_bit_exact() -> None:
    net = _net(torch.float16)
    before = _snapshot(net)
    patcher = ModelPatcher({"m": net})
    delta = torch.full((3, 4), 0.1)
    assert patcher.apply(("a", 1.0), {"m.0.weight": [delta, delta]})
    expected = (before["0.weight"].float() + 0.2).half()
    assert torch.equal(net[0].weight.data, expected)
    assert torch.equal(net[1].weight.data, before["1.weight"])
    patcher.restore()
    after = _snapshot(net)
    for k in before:
        assert torch.equal(before[k], after[k]), k


def test_unchanged_key_is_not_reapplied_and_change_replaces() -> None:
    net = _net()
    patcher = ModelPatcher({"m": net})
    w0 = net[0].weight.data.clone()
    assert patcher.apply("k1", {"m.0.weight": [torch.ones(3, 4)]})
    assert not patcher.apply("k1", {"m.0.weight": [torch.ones(3, 4)]})
    assert patcher.applied_count == 1
    # A new set replaces the old one instead of stacking on it.
    assert patcher.apply("k2", {"m.0.weight": [2 * torch.ones(3, 4)]})
    torch.testing.assert_close(net[0].weight.data, w0 + 2)
    patcher.apply("empty", {})
    assert torch.equal(net[0].weight.data, w0)
    assert patcher.patched_names == []


def test_callable_patch_sees_original_weight() -> None:
    net = _net()
    patcher = ModelPatcher({"m": net})
    w0 = net[1].weight.data.clone()
    patcher.apply("scale", {"m.1.weight": [lambda w: w * 0.5]})
    torch.testing.assert_close(net[1].weight.data, w0 * 1.5)


def test_failed_patch_leaves_model_untouched() -> None:
    net = _net()
    patcher = ModelPatcher({"m": net})
    patcher.apply("good", {"m.0.weight": [torch.ones(3, 4)]})
    patched = net[0].weight.data.clone()
    with pytest.raises(PatchError, match="does not fit"):
        patcher.apply("bad", {"m.0.bias": [torch.ones(7)]})
    with pytest.raises(PatchError, match="no parameter"):
        patcher.apply("bad2", {"m.9.weight": [torch.ones(1)]})
    assert torch.equal(net[0].weight.data, patched)
    assert patcher.current_key == "good"


def test_context_manager_restores_previous_set() -> None:
    net = _net()
    patcher = ModelPatcher({"m": net})
    w0 = net[0].weight.data.clone()
    patcher.apply("base", {"m.0.weight": [torch.ones(3, 4)]})
    with patcher.patched({"m.0.bias": [torch.ones(3)]}):
        assert torch.equal(net[0].weight.data, w0)  # the temporary set replaces, it does not stack
    torch.testing.assert_close(net[0].weight.data, w0 + 1)
    assert patcher.current_key == "base"
    patcher.restore()
    assert torch.equal(net[0].weight.data, w0)


def test_no_class_level_patching() -> None:
    forward, load = torch.nn.Linear.forward, torch.nn.Linear._load_from_state_dict
    net = _net()
    ModelPatcher({"m": net}).apply("x", {"m.0.weight": [torch.ones(3, 4)]})
    assert torch.nn.Linear.forward is forward and torch.nn.Linear._load_from_state_dict is load
    assert isinstance(net[0].weight, torch.nn.Parameter)
