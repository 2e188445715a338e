"""Prompt matrix and Prompts from file or textbox, through the job path the page and the API use."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from modules import job_runner, scripts, ui_scripts
from modules.errors import WebUIError
from modules.image_metadata import read_info_from_image
from modules.params import Txt2ImgParams

BASE = {"width": 64, "height": 64, "steps": 2, "seed": 11, "sampler_name": "Euler"}


@pytest.fixture
def rt(runtime):
    ui_scripts.layout_without_page(runtime.scripts_txt2img)
    return runtime


def run_script(rt, title: str, args: list, **params):
    request = job_runner.JobRequest(Txt2ImgParams(**{**BASE, **params}, script_name=title, script_args=args))
    return job_runner.run_now(rt, request)


def plain(rt, **params) -> np.ndarray:
    out = job_runner.run_now(rt, job_runner.JobRequest(Txt2ImgParams(**{**BASE, **params})))
    return np.asarray(out.images[0])


def files(rt, folder: str) -> list:
    root = rt.paths.data_dir / "outputs" / folder
    return sorted(p for p in root.rglob("*.png")) if root.exists() else []


def test_builtin_scripts_load_as_a1111_modules(rt) -> None:
    modules = {d.script_class.__module__ for d in scripts.scripts_data}
    assert {"prompt_matrix.py", "prompts_from_file.py"} <= modules
    assert rt.scripts_txt2img.titles[:2] == ["Prompt matrix", "Prompts from file or textbox"]
    assert "Prompt matrix" in rt.scripts_img2img.titles


def test_prompt_matrix_renders_every_combination_in_a_labelled_grid(rt) -> None:
    out = run_script(rt, "Prompt matrix", [False, False, "positive", "comma", 0], prompt="a cat|red|blue")
    assert out.index_of_first_image == 1
    grid, cells = out.images[0], out.images[1:5]
    assert len(out.images) == 5
    assert [c.info["parameters"].split("\n")[0] for c in cells] == ["a cat", "a cat, red", "a cat, blue",
                                                                  "a cat, red, blue"]
    assert grid.width > 2 * 64 and grid.height > 2 * 64  # two by two cells plus legends
    # Each cell is the plain generation of its combination with the shared seed.
    assert np.array_equal(np.asarray(cells[3]), plain(rt, prompt="a cat, red, blue"))
    saved = [p for p in files(rt, "txt2img-grids") if p.name.startswith("prompt_matrix")]
    assert len(saved) == 1 and read_info_from_image(Image.open(saved[0]))[0].startswith("a cat\nSteps: 2")
    assert "Seed: 11" in read_info_from_image(Image.open(saved[0]))[0]


def test_prompt_matrix_options_put_parts_first_vary_seeds_and_use_defaults(rt) -> None:
    out = run_script(rt, "Prompt matrix", [True, True, "positive", "space"], prompt="cat|red", batch_size=2)
    assert [c.info["parameters"].split("\n")[0] for c in out.images[1:3]] == ["cat", "red cat"]
    assert out.all_seeds == [11, 12]
    neg = run_script(rt, "Prompt matrix", [False, False, "negative"], prompt="x", negative_prompt="ugly|blurry")
    assert neg.all_negative_prompts == ["ugly", "ugly, blurry"]


def test_empty_or_huge_matrix_is_refused_before_any_image(rt) -> None:
    for prompt, message in (("|  |", "the prompt is empty"), ("a" + "|b" * 12, "at most 10")):
        with pytest.raises(WebUIError, match=message):
            run_script(rt, "Prompt matrix", [], prompt=prompt)
    assert files(rt, "txt2img-images") == [] and files(rt, "txt2img-grids") == []


def test_prompts_from_file_runs_each_line_with_its_options(rt) -> None:
    lines = 'a red car\n\n--prompt "a blue" bird --negative_prompt ugly --steps 3 --seed 5 --sampler_name Euler'
    out = run_script(rt, "Prompts from file or textbox", [False, False, "start", lines], prompt="photo")
    assert len(out.images) == 2
    first, second = (im.info["parameters"] for im in out.images)
    assert first.startswith("a red car photo") and "Seed: 11" in first
    assert second.startswith("a blue bird photo\nNegative prompt: ugly\n") and "Steps: 3" in second
    assert "Seed: 5" in second
    assert np.array_equal(np.asarray(out.images[1]), plain(rt, prompt="a blue bird photo", negative_prompt="ugly",
                                                           steps=3, seed=5))
    assert len(files(rt, "txt2img-images")) == 3  # two from the script, one from the plain run
    assert files(rt, "txt2img-grids") == []


def test_prompts_from_file_iterates_seeds_per_line(rt) -> None:
    out = run_script(rt, "Prompts from file or textbox", [True, False, "end", "one\ntwo"], prompt="", n_iter=2)
    assert [read for read in (o.info["parameters"].split("Seed: ")[1].split(",")[0] for o in out.images)] == \
        ["11", "12", "13", "14"]


@pytest.mark.parametrize(("text", "message"), [
    ("fine\n--prompt cat --colour red", "line 2: unknown option --colour"),
    ("--prompt cat --steps many", "line 1: --steps 'many' is not valid"),
    ("--prompt cat --sampler_name Nope", "line 1:.*Nope"),
    ("--prompt cat --sd_model missing", "line 1:.*'missing' not found"),
    ("--prompt cat --outpath_samples /etc", "outside the data folder"),
    ("--prompt 'unclosed", "line 1: No closing quotation"),
    ("  \n ", "is empty"),
])
def test_bad_prompt_lines_name_the_line_and_generate_nothing(rt, text: str, message: str) -> None:
    with pytest.raises(WebUIError, match=message):
        run_script(rt, "Prompts from file or textbox", [False, False, "start", text])
    assert files(rt, "txt2img-images") == []


def test_postprocessing_in_the_main_ui_upscales_before_saving(runtime) -> None:
    runtime.opts.set("postprocessing_enable_in_main_ui", ["Simple Upscale", "GFPGAN"])
    ui_scripts.layout_without_page(runtime.scripts_txt2img)
    script = runtime.scripts_txt2img.script("Postprocessing")
    assert [arg for _, arg in script.layout] == ["upscale_by", "upscaler_name", "gfpgan_visibility"]
    params = Txt2ImgParams(**BASE, alwayson_scripts={"Postprocessing": {"args": [2, "Lanczos", 0]}})
    out = job_runner.run_now(runtime, job_runner.JobRequest(params))
    (image,) = out.images
    assert image.size == (128, 128)
    assert "Postprocess upscale by: 2" in out.info and "Postprocess upscaler: Lanczos" in out.info
    (saved,) = files(runtime, "txt2img-images")
    with Image.open(saved) as im:
        assert im.size == (128, 128) and "Postprocess upscaler: Lanczos" in read_info_from_image(im)[0]
    # Without the option the section has no controls and the image is left alone.
    runtime.opts.set("postprocessing_enable_in_main_ui", [])
    ui_scripts.layout_without_page(runtime.scripts_txt2img)
    assert job_runner.run_now(runtime, job_runner.JobRequest(Txt2ImgParams(**BASE))).images[0].size == (64, 64)
