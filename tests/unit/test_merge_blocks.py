"""Block-weight syntax for the merger: SuperMerger's 26 (SD1/SD2) and 20 (SDXL) values, presets, key mapping."""

from __future__ import annotations

import pytest

from modules.errors import ValidationError
from modules.merge_blocks import block_labels, parse_block_weights, preset_values

U = "model.diffusion_model."


def test_26_values_map_to_base_in_mid_out() -> None:
    values = [str(i / 100) for i in range(26)]
    w = parse_block_weights(",".join(values), "SD1", 0.3)
    assert block_labels("SD1")[0] == "BASE" and block_labels("SD1")[13] == "M00" and len(block_labels("SD1")) == 26
    assert w.multiplier("cond_stage_model.transformer.text_model.final_layer_norm.weight") == 0.0  # BASE
    assert w.multiplier("first_stage_model.decoder.conv_in.weight") == 0.0
    assert w.multiplier(U + "input_blocks.0.0.weight") == 0.01  # IN00
    assert w.multiplier(U + "input_blocks.11.0.out_layers.3.weight") == 0.12  # IN11
    assert w.multiplier(U + "middle_block.1.proj_in.weight") == 0.13  # M00
    assert w.multiplier(U + "output_blocks.0.0.skip_connection.weight") == 0.14  # OUT00
    assert w.multiplier(U + "output_blocks.11.1.proj_out.weight") == 0.25  # OUT11
    assert w.multiplier(U + "time_embed.0.weight") == 0.01  # with IN00
    assert w.multiplier(U + "out.2.weight") == 0.25  # with the last OUT block


def test_without_base_and_presets_use_m_outside_the_unet() -> None:
    w = parse_block_weights(" ".join(["1"] * 25), "SD2", 0.4)
    assert w.base == 0.4 and w.middle == 1.0
    xl = parse_block_weights("grad_v", "SDXL", 0.7)
    assert xl.base == 0.7 and len(xl.inputs) == 9 and len(xl.outputs) == 9
    assert xl.inputs[0] == 1.0 and xl.middle == 0.0 and xl.outputs[-1] == 1.0
    assert preset_values("MIDDLE_ONLY", "SD1") == [0.0] * 12 + [1.0] + [0.0] * 12
    assert parse_block_weights("", "SD1", 0.3) is None and parse_block_weights(None, "SD1", 0.3) is None


@pytest.mark.parametrize(("spec", "family", "msg"), [
    ("1,2,3", "SD1", "takes 26 values"),
    (",".join(["0.5"] * 26), "SDXL", "takes 20 values"),
    (",".join(["x"] * 26), "SD1", "is not a number"),
    (",".join(["nan"] * 26), "SD1", "finite"),
])
def test_bad_specs_name_the_problem(spec: str, family: str, msg: str) -> None:
    with pytest.raises(ValidationError, match=msg):
        parse_block_weights(spec, family, 0.3)


def test_block_index_beyond_the_given_values_is_refused() -> None:
    w = parse_block_weights(",".join(["0"] * 20), "SDXL", 0.3)
    with pytest.raises(ValidationError, match="block 11"):
        w.multiplier(U + "input_blocks.11.0.weight")
