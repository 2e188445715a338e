"""ui-config.json: written with every control's defaults on first start, and its values applied on the next."""

from __future__ import annotations

import json


def build(rt):
    from modules.ui import create_ui

    demo = create_ui(rt)
    return demo, rt.ui_loadsave.keyed_components(demo, [rt.scripts_txt2img, rt.scripts_img2img])


def test_first_start_writes_defaults_and_the_next_applies_edits(make_runtime, data_dir) -> None:
    build(make_runtime())
    path = data_dir / "ui-config.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["txt2img/Sampling steps/value"] == 20 and data["txt2img/Sampling steps/maximum"] == 150
    assert data["img2img/Denoising strength/value"] == 0.75
    assert data["customscript/prompt_matrix.py/txt2img/Select prompt/value"] == "positive"
    assert not any(k.startswith("settings/") for k in data)

    data.update({"txt2img/Sampling steps/value": 33, "txt2img/Sampling steps/maximum": 200,
                 "img2img/Denoising strength/visible": False, "txt2img/Sampling method/value": "No such sampler",
                 "customscript/prompt_matrix.py/txt2img/Select prompt/value": "negative"})
    path.write_text(json.dumps(data), encoding="utf-8")
    demo, keyed = build(make_runtime())
    steps = keyed["txt2img/Sampling steps"]
    assert (steps.value, steps.maximum) == (33, 200)
    assert keyed["img2img/Denoising strength"].visible is False
    assert keyed["txt2img/Sampling method"].value != "No such sampler"  # not one of its choices: ignored
    assert keyed["customscript/prompt_matrix.py/txt2img/Select prompt"].value == "negative"
    served = {c["id"]: c["props"] for c in demo.config["components"]}
    assert served[steps._id]["value"] == 33  # the page is built from the updated config


def test_a_broken_file_is_left_alone(make_runtime, data_dir) -> None:
    (data_dir / "ui-config.json").write_text("{not json", encoding="utf-8")
    rt = make_runtime()
    build(rt)
    assert "not readable" in rt.ui_loadsave.error
    assert (data_dir / "ui-config.json").read_text(encoding="utf-8") == "{not json"
