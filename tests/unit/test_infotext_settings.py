"""Settings named in a pasted infotext become per-job overrides, listed as A1111's "Override settings" row."""

from __future__ import annotations

from modules import infotext_settings as its
from modules.infotext import parse_generation_parameters
from modules.options import Options
from modules.shared_options import build_options_table

TEXT = "a cat\nSteps: 20, Sampler: Euler a, Seed: 1, Size: 64x64, Clip skip: 2, ENSD: 31337, RNG: GPU, Model hash: abc"


def test_only_settings_that_differ_are_offered_and_read_back() -> None:
    opts = Options(build_options_table())
    found = its.overrides_from_infotext(parse_generation_parameters(TEXT), opts)
    # RNG: GPU is the current value; the checkpoint is left out while disable_weights_auto_swap is on.
    assert found == [("Clip skip", "CLIP_stop_at_last_layers", 2), ("ENSD", "eta_noise_seed_delta", 31337)]
    choices = [its.override_choice(label, value) for label, _k, value in found]
    assert choices == ["Clip skip: 2", "ENSD: 31337"]
    assert its.overrides_from_choices(choices + ["Nonsense: 1", "no separator"], opts) == {
        "CLIP_stop_at_last_layers": 2, "eta_noise_seed_delta": 31337}


def test_checkpoint_offered_only_when_swapping_is_allowed_and_it_resolves() -> None:
    opts = Options(build_options_table())
    opts.set("disable_weights_auto_swap", False)
    params = parse_generation_parameters(TEXT)
    titles = {"abc": "tiny.safetensors [abc]"}
    found = its.overrides_from_infotext(params, opts, checkpoint_title=titles.get)
    assert ("Model hash", "sd_model_checkpoint", "tiny.safetensors [abc]") in found
    assert all(k != "sd_model_checkpoint" for _l, k, _v in its.overrides_from_infotext(
        params, opts, checkpoint_title=lambda _n: None))
    # A value the setting's type cannot hold is not offered.
    assert its.overrides_from_infotext({"Clip skip": "two"}, opts) == []
