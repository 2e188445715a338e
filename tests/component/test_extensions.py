"""Extensions: discovery and ordering, broken scripts, the sample extension's hooks in A1111 order, git install."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch

from modules import extensions, job_runner, script_callbacks, script_loading, scripts, ui_extensions, ui_scripts
from modules.extensions import ExtensionAccessError, ExtensionError
from modules.params import Txt2ImgParams
from tests.fixtures.tiny_models import write_tiny_checkpoint

SAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "sample_extension"
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


@pytest.fixture(autouse=True)
def _clean_callbacks():
    yield
    script_callbacks.clear_callbacks()


def write_ext(root: Path, name: str, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / name / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / name / rel).write_text(text)
    return root / name


def sample_module():
    for data in scripts.scripts_data:
        if data.path.endswith("sample_hooks.py"):
            return data.module
    raise AssertionError("sample extension was not loaded")


class FakeOpts(dict):
    pass


def test_discovery_order_enable_state_and_requires(tmp_path: Path) -> None:
    builtin, user = tmp_path / "builtin", tmp_path / "user"
    write_ext(builtin, "Base", {"scripts/b.py": ""})
    write_ext(user, "zeta", {"scripts/z.py": "", "metadata.ini": "[scripts/z.py]\nBefore = alpha\n"})
    write_ext(user, "alpha", {"scripts/a.py": "", "metadata.ini": "[Extension]\nRequires = missing-one\n"})
    write_ext(user, "off", {"scripts/o.py": ""})
    found = extensions.list_extensions(builtin, user, FakeOpts(disabled_extensions=["off"]))
    assert [e.name for e in found] == ["Base", "alpha", "off", "zeta"]
    assert [e.enabled for e in found] == [True, True, False, True]
    assert found[0].is_builtin and not found[1].is_builtin
    assert any("missing-one" in err for err in found[1].errors)
    order = [f"{e.name}/{f.name}" for e, f in extensions.ordered_scripts(found)]
    assert order == ["Base/b.py", "zeta/z.py", "alpha/a.py"]  # Before= moved zeta ahead; disabled one absent
    extra = extensions.list_extensions(builtin, user, FakeOpts(disable_all_extensions="extra"))
    assert [e.name for e in extra if e.enabled] == ["Base"]
    class Flags:
        disable_all_extensions = True
    assert not any(e.enabled for e in extensions.list_extensions(builtin, user, None, Flags()))


def test_broken_script_is_reported_by_name_and_skipped(make_runtime, data_dir: Path) -> None:
    good = "from modules import scripts\nclass Good(scripts.Script):\n    def title(self):\n        return 'Good one'\n" \
           "    def show(self, is_img2img):\n        return scripts.AlwaysVisible\n"
    write_ext(data_dir / "extensions", "broken-ext", {"scripts/broken.py": "raise ImportError('needs foo')\n",
                                                       "scripts/good.py": good})
    rt = make_runtime()
    assert "Good one" in [s.title() for s in rt.scripts_txt2img.scripts]
    msgs = [m for m in rt.extension_errors if "broken-ext" in m and "broken.py" in m and "needs foo" in m]
    assert msgs and any(msgs[0] in w for w in rt.warnings)


def test_callback_errors_are_reported_and_others_still_run() -> None:
    seen = []
    script_callbacks.on_before_ui(lambda: 1 / 0, name="bad")
    script_callbacks.on_before_ui(lambda: seen.append("ok"))
    script_callbacks.before_ui_callback()
    assert seen == ["ok"]
    assert any("before_ui/bad" in e and "ZeroDivisionError" in e for e in script_callbacks.errors)
    with pytest.raises(ValueError, match="unknown callback category"):
        script_callbacks.add_callback("nope", print)


def test_ldm_only_attributes_raise_naming_the_extension(tmp_path: Path) -> None:
    from modules import sd_hijack, shared

    class Model:
        is_sdxl, is_sd1, is_sd2, variant = False, True, False, "sd1"

    proxy = shared.SdModelProxy(Model(), "info", "abcd")
    assert proxy.is_sd1 and not proxy.is_sdxl and proxy.sd_model_hash == "abcd" and proxy.sd_checkpoint_info == "info"
    code = compile("proxy.model.diffusion_model", str(tmp_path / "extensions" / "my-ext" / "scripts" / "x.py"), "eval")
    with pytest.raises(shared.LDMOnlyError, match="my-ext.*sd_model.model"):
        eval(code, {"proxy": proxy})
    code = compile("sd_hijack.model_hijack.hijack", str(tmp_path / "extensions" / "other" / "scripts" / "y.py"), "eval")
    with pytest.raises(AttributeError, match="'other'.*sd_hijack"):
        eval(code, {"sd_hijack": sd_hijack})


@pytest.fixture
def sample_runtime(make_runtime, data_dir: Path):
    shutil.copytree(SAMPLE, data_dir / "extensions" / "sample-extension")
    write_tiny_checkpoint("sd1", data_dir / "models" / "Stable-diffusion", "tiny", seed=7)
    rt = make_runtime("--no-half")
    with gr.Blocks():
        inputs = ui_scripts.create_script_ui(rt.scripts_txt2img)
    rt.switch_checkpoint("tiny.safetensors")
    return rt, inputs


def run_with_args(rt, args_by_title: dict[str, list], selected: str | None = None, **kw):
    runner = rt.scripts_txt2img
    flat = [0] + [None] * (max(s.args_to for s in runner.scripts) - 1)
    for title, values in args_by_title.items():
        s = runner.script(title)
        flat[s.args_from:s.args_to] = values
    if selected:
        flat[0] = runner.titles.index(selected) + 1
    params = Txt2ImgParams(width=64, height=64, steps=3, seed=11, **kw)
    return job_runner.run_now(rt, job_runner.JobRequest(params, script_args=tuple(flat)))


def collapse(calls: list[str]) -> list[str]:
    return [c for i, c in enumerate(calls) if i == 0 or calls[i - 1] != c]


def test_sample_extension_hooks_in_a1111_order_and_prompt_edit(sample_runtime, data_dir: Path) -> None:
    rt, inputs = sample_runtime
    mod = sample_module()
    assert str(data_dir / "extensions" / "sample-extension") == mod.BASEDIR
    assert "ui_settings" in mod.CALLS and "model_loaded:True" in mod.CALLS
    assert rt.opts.get("sample_extension_option") == "default"
    titles = [s.title() for s in rt.scripts_txt2img.alwayson_scripts]
    assert titles.index("Infotext note") < titles.index("Sample extension")  # metadata.ini After=
    assert rt.scripts_txt2img.titles[-1] == "Sample selectable"  # after the built-in ones, as in A1111
    assert "Prompt matrix" in rt.scripts_txt2img.titles
    assert len(inputs) == rt.scripts_txt2img.scripts[-1].args_to

    mod.CALLS.clear()
    plain = run_with_args(rt, {"Sample extension": [False, ""]}, prompt="a cat")
    assert collapse(mod.CALLS) == [
        "setup", "before_process", "process", "before_process_batch:0", "process_batch",
        "process_before_every_sampling", "cfg_denoiser", "cfg_denoised", "cfg_after_cfg", "cfg_denoiser",
        "cfg_denoised", "cfg_after_cfg", "cfg_denoiser", "cfg_denoised", "cfg_after_cfg", "postprocess_batch",
        "postprocess_batch_list:1", "postprocess_image", "before_image_saved", "image_saved", "postprocess"]
    edited = run_with_args(rt, {"Sample extension": [True, ", red hat"]}, prompt="a cat")
    assert "a cat, red hat" in edited.infotexts[0] and "a cat, red hat" not in plain.infotexts[0]
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(edited.images[0]))
    assert "sample suffix , red hat" in edited.comments

    noted = run_with_args(rt, {"Infotext note": [True, "hello note"]}, prompt="a cat")
    assert "Note: hello note" in noted.infotexts[0]

    mod.CALLS.clear()
    run_with_args(rt, {"Sample selectable": [2]}, selected="Sample selectable", prompt="a cat")
    assert mod.CALLS[0] == "run:2" and mod.CALLS.count("cfg_denoiser") == 2


def test_extension_setting_persists(sample_runtime, make_runtime) -> None:
    rt, _ = sample_runtime
    rt.opts.set("sample_extension_option", "changed")
    rt.save_settings()
    rt2 = make_runtime("--no-half")
    assert rt2.opts.get("sample_extension_option") == "changed"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV}).stdout


def test_install_from_local_git_update_and_disable(make_runtime, data_dir: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(SAMPLE, repo)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    rt = make_runtime("--no-half")
    msg = ui_extensions.install(rt, str(repo), dirname="sample-ext")
    target = data_dir / "extensions" / "sample-ext"
    assert "Installed into" in msg and (target / "scripts" / "sample_hooks.py").is_file()
    assert (target / "installed.txt").read_text() == "ok"  # install.py ran with launch helpers
    ext = next(e for e in rt.extensions if e.name == "sample-ext")
    assert ext.remote == str(repo) and ext.branch == "main" and len(ext.commit_hash) == 40

    with pytest.raises(ExtensionError, match="already"):
        ui_extensions.install(rt, str(repo), dirname="another")
    with pytest.raises(ExtensionError, match="invalid extension folder name"):
        ui_extensions.install(rt, str(repo), dirname="../escape")
    rt.cmd_opts.disable_extension_access = True
    with pytest.raises(ExtensionAccessError, match="--enable-insecure-extension-access"):
        ui_extensions.install(rt, str(repo), dirname="x")
    with pytest.raises(ExtensionAccessError):
        ui_extensions.check_for_updates(rt)
    rt.cmd_opts.disable_extension_access = False

    assert ui_extensions.check_for_updates(rt) == []
    (repo / "NEW.txt").write_text("v2")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "second")
    assert ui_extensions.check_for_updates(rt) == ["sample-ext"]
    assert ext.status == "new commits"
    enabled = [e.name for e in rt.extensions if e.name != "sample-ext"]
    text = ui_extensions.apply_changes(rt, enabled, "none", update=["sample-ext"])
    assert "Updated sample-ext" in text and (target / "NEW.txt").read_text() == "v2"
    assert ext.commit_hash == git(repo, "rev-parse", "HEAD").strip()

    rt2 = make_runtime("--no-half")  # disabled: listed, but its scripts are not loaded
    assert [e.enabled for e in rt2.extensions if e.name == "sample-ext"] == [False]
    assert "Sample extension" not in [s.title() for s in rt2.scripts_txt2img.scripts]
    assert rt2.opts.get("disabled_extensions") == ["sample-ext"]


def test_backup_restore_enabled_set(make_runtime, data_dir: Path) -> None:
    write_ext(data_dir / "extensions", "one", {"scripts/a.py": ""})
    rt = make_runtime()
    folder = data_dir / "config_states"
    saved = extensions.save_config_state(folder, rt.extensions, "before")
    assert extensions.list_config_states(folder) == [saved]
    ui_extensions.apply_changes(rt, [], "none")
    assert "one" in rt.opts.get("disabled_extensions")
    assert extensions.restore_enabled_set(saved, rt.extensions) == []


def test_index_offline_and_file(tmp_path: Path) -> None:
    from tests.live_server import free_port

    with pytest.raises(ExtensionError, match="offline"):
        extensions.fetch_index(f"http://127.0.0.1:{free_port()}/index.json", timeout=2)
    index = tmp_path / "index.json"
    index.write_text('{"extensions": [{"name": "X", "url": "https://example.com/x.git", "tags": ["script"]}]}')
    assert extensions.fetch_index(index.as_uri())["extensions"][0]["name"] == "X"
    index.write_text("not json")
    with pytest.raises(ExtensionError, match="not valid JSON"):
        extensions.fetch_index(index.as_uri())


def test_preload_adds_flags(data_dir: Path) -> None:
    from modules import cmd_args

    shutil.copytree(SAMPLE, data_dir / "extensions" / "sample-extension")
    parser = cmd_args.build_parser()
    errors = script_loading.extension_preload(parser, ["--data-dir", str(data_dir)])
    opts = cmd_args.parse_args(["--data-dir", str(data_dir), "--sample-extension-flag", "v"], parser=parser,
                               environ={})
    assert errors == [] and opts.sample_extension_flag == "v"


def test_page_head_carries_extension_js_and_css(sample_runtime) -> None:
    from modules.ui import head_html

    rt, _ = sample_runtime
    head = head_html(rt)
    assert "window.sampleExtensionLoaded = true" in head and "rgb(1, 2, 3)" in head
    assert "promptBracketProblem" in head


# --- callbacks fired from their A1111 places ------------------------------------------------------------
def test_list_optimizers_and_unets_fire_once_at_start(make_runtime, data_dir: Path) -> None:
    calls = data_dir / "calls.txt"
    write_ext(data_dir / "extensions", "lister", {"scripts/l.py": (
        "from modules import script_callbacks\n"
        f"def opt(res):\n    open({str(calls)!r}, 'a').write('x')\n    res.append('my-optimizer')\n"
        "script_callbacks.on_list_optimizers(opt)\n"
        "script_callbacks.on_list_unets(lambda res: res.extend(['unet-a', 'unet-b']))\n")})
    make_runtime()
    assert script_callbacks.listed_optimizers == ["my-optimizer"]
    assert script_callbacks.listed_unets == ["unet-a", "unet-b"]
    assert calls.read_text() == "x"


def test_infotext_pasted_callback_can_rewrite_parsed_fields() -> None:
    from modules.ui_txt2img import paste_values

    seen = []

    def pasted(text, params):
        seen.append((text, dict(params)))
        params["Steps"] = "33"

    script_callbacks.on_infotext_pasted(pasted)
    text = "a cat\nNegative prompt: dog\nSteps: 12, Sampler: Euler, CFG scale: 7, Seed: 5, Size: 64x64"
    out = paste_values(text)
    assert seen and seen[0][0] == text and seen[0][1]["Steps"] == "12"
    assert out[0] == "a cat" and out[2] == 33  # the callback's rewrite reached the Steps field


def test_before_token_counter_callback_rewrites_counted_prompt(runtime) -> None:
    from modules.ui_toprow import token_counter_html

    plain = token_counter_html(runtime, "a cat", None, 20, True)
    seen = []

    def before(params):
        seen.append((params.prompt, params.steps, params.is_positive))
        params.prompt = params.prompt + ", " + ", ".join(["word"] * 10)

    script_callbacks.on_before_token_counter(before)
    counted = token_counter_html(runtime, "a cat", None, 20, True)
    assert seen == [("a cat", 20, True)]
    assert int(plain.split(">")[1].split("/")[0]) + 20 == int(counted.split(">")[1].split("/")[0])


def test_extra_noise_callback_replaces_the_extra_noise(sample_runtime) -> None:
    import torch

    from modules import processing, txt2img
    from modules.state import JobState

    rt, _ = sample_runtime

    def run(extra: float) -> np.ndarray:
        rt.opts.set("img2img_extra_noise", extra)
        params = Txt2ImgParams(width=64, height=64, steps=3, seed=3, prompt="a cat", enable_hr=True, hr_scale=1.5,
                               hr_upscaler="Latent", denoising_strength=0.5, hr_second_pass_steps=2)
        res = processing.process_images(txt2img.build_processing(rt, params, JobState()))
        return np.asarray(res.images[0])

    without = run(0.0)
    with_noise = run(0.5)
    assert not np.array_equal(without, with_noise)
    seen = []

    def zero(params):
        seen.append(tuple(params.noise.shape) == tuple(params.x.shape) == tuple(params.xi.shape))
        params.noise = torch.zeros_like(params.noise)

    script_callbacks.on_extra_noise(zero)
    zeroed = run(0.5)
    assert seen and all(seen)
    np.testing.assert_array_equal(zeroed, without)  # the callback's noise, not ours, was added


# --- model-level hooks through the model patcher --------------------------------------------------------
PATCH_SCRIPT = '''
import torch
import gradio as gr
from modules import scripts

HOOK_CALLS = []


class PatchTest(scripts.Script):
    def title(self):
        return "Patch test"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        return [gr.Checkbox(False, label="Patch the model", elem_id=self.elem_id("on"))]

    def process(self, p, on):
        if on:
            bias = p.model_patches.patcher.original("unet.conv_in.bias")
            p.model_patches.add_weight_delta("unet.conv_in.bias", torch.full(bias.shape, 0.7))
            p.model_patches.add_forward_hook("unet.conv_out", lambda m, args, out: HOOK_CALLS.append(1))
'''


def test_extension_model_patch_changes_output_and_is_undone(make_runtime, data_dir: Path) -> None:
    write_ext(data_dir / "extensions", "patcher-ext", {"scripts/patch_test.py": PATCH_SCRIPT})
    write_tiny_checkpoint("sd1", data_dir / "models" / "Stable-diffusion", "tiny", seed=7)
    rt = make_runtime("--no-half")
    with gr.Blocks():
        ui_scripts.create_script_ui(rt.scripts_txt2img)
    rt.switch_checkpoint("tiny.safetensors")
    module = next(d.module for d in scripts.scripts_data if d.path.endswith("patch_test.py"))
    unet = rt.models.current.pipe.unet
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    plain = run_with_args(rt, {"Patch test": [False]}, prompt="a cat")
    assert module.HOOK_CALLS == []
    patched = run_with_args(rt, {"Patch test": [True]}, prompt="a cat")
    assert len(module.HOOK_CALLS) == 3  # one UNet call per step (cond and uncond batched)
    assert not np.array_equal(np.asarray(plain.images[0]), np.asarray(patched.images[0]))
    after = unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit-exact
    assert not unet.conv_out._forward_hooks
    again = run_with_args(rt, {"Patch test": [False]}, prompt="a cat")
    np.testing.assert_array_equal(np.asarray(plain.images[0]), np.asarray(again.images[0]))


def test_job_patches_stack_on_the_current_set_and_clear_back_to_it() -> None:
    from modules.model_patcher import ModelPatcher, PatchError

    net = torch.nn.Sequential(torch.nn.Linear(3, 3))
    original = net[0].weight.detach().clone()
    patcher = ModelPatcher({"m": net})
    patcher.apply("lora-set", {"m.0.weight": [torch.ones(3, 3)]})
    patcher.set_extra({"m.0.weight": [torch.full((3, 3), 2.0)]})
    assert torch.allclose(net[0].weight, original + 3)
    assert patcher.current_key == "lora-set" and not patcher.apply("lora-set", {"m.0.weight": [torch.ones(3, 3)]})
    with pytest.raises(PatchError):
        patcher.set_extra({"m.0.weight": [torch.ones(4)]})
    assert torch.allclose(net[0].weight, original + 3)
    patcher.set_extra(None)
    assert torch.allclose(net[0].weight, original + 1)
    patcher.restore()
    assert torch.equal(net[0].weight, original)


def test_localization_setting_lists_extension_files_and_head_carries_the_map(sample_runtime) -> None:
    import json

    from modules.ui import head_html

    rt, _ = sample_runtime
    assert "xx" in rt.opts.data_labels["localization"].choices
    assert "window.localization = {};" in head_html(rt)
    rt.opts.set("localization", "xx")
    head = head_html(rt)
    start = head.index("window.localization = ") + len("window.localization = ")
    mapping = json.loads(head[start:head.index(";</script>", start)])
    assert mapping["Generate"] == "Generieren"
    loc = next(e for e in rt.extensions if e.name == "sample-extension").path / "localizations"
    (loc / "xx.json").write_text(json.dumps({"Generate": "</script><b>x"}))
    assert "</script><b>" not in head_html(rt)  # a translation cannot end the script element
