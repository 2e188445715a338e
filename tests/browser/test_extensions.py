"""Extensions in a real browser: their JS and CSS are on the page, the bracket checker flags the prompt."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.live_server import LiveServer

pytestmark = pytest.mark.browser

SAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "sample_extension"


def test_extension_js_css_and_tabs(page, tmp_path: Path) -> None:
    shutil.copytree(SAMPLE, tmp_path / "extensions" / "sample-extension")
    (tmp_path / "extensions" / "broken").mkdir(parents=True)
    (tmp_path / "extensions" / "broken" / "scripts").mkdir()
    (tmp_path / "extensions" / "broken" / "scripts" / "bad.py").write_text("raise RuntimeError('boom at import')\n")
    with LiveServer(tmp_path, "--no-half", "--sample-extension-flag", "x") as url:
        page.goto(url)
        page.wait_for_selector("#sample-extension-marker", state="attached", timeout=60000)
        assert page.evaluate("window.sampleExtensionLoaded === true")
        color = page.evaluate("getComputedStyle(document.querySelector('#sample-extension-marker')).borderTopColor")
        assert color == "rgb(1, 2, 3)"
        # The broken extension is named on the page; the app still started.
        warnings = page.locator(".startup-warning").all_inner_texts()
        assert any("broken" in w and "bad.py" in w and "boom at import" in w for w in warnings)
        # Script UI: the always-on sample script's controls are in the txt2img tab.
        assert page.locator("#script_txt2img_sample_extension_enabled").count() == 1
        # Bracket checker: unbalanced brackets show a marker that names the problem.
        box = page.locator("#txt2img_prompt textarea")
        box.fill("a (cat [b]")
        warning = page.locator("#txt2img_prompt_bracket_warning")
        warning.filter(has_text="Unclosed").wait_for(timeout=10000)
        box.fill("a (cat) [b]")
        page.wait_for_function("document.querySelector('#txt2img_prompt_bracket_warning').style.display === 'none'")
        # The Extensions tab is on the page (its table is covered by the component tests).
        assert page.locator("button", has_text="Extensions").count() >= 1
        assert not page.js_errors


def test_localization_from_extension_translates_the_page(page, tmp_path: Path) -> None:
    import json

    shutil.copytree(SAMPLE, tmp_path / "extensions" / "sample-extension")
    (tmp_path / "config.json").write_text(json.dumps({"localization": "xx"}))
    with LiveServer(tmp_path, "--no-half") as url:
        page.goto(url)
        page.locator("#txt2img_generate", has_text="Generieren").wait_for(timeout=60000)
        page.locator("#txt2img_steps", has_text="Schritte").wait_for(timeout=10000)
        assert page.locator("#txt2img_steps", has_text="Sampling steps").count() == 0
        page.locator("#txt2img_prompt textarea").fill("Generate")  # user text is never translated
        page.wait_for_timeout(300)
        assert page.locator("#txt2img_prompt textarea").input_value() == "Generate"
        assert not page.js_errors
    (tmp_path / "config.json").write_text(json.dumps({"localization": "None"}))
    with LiveServer(tmp_path, "--no-half") as url:
        page.goto(url)
        page.locator("#txt2img_generate", has_text="Generate").wait_for(timeout=60000)
        assert page.evaluate("Object.keys(window.localization).length") == 0


def test_apply_and_restart_button_restarts_with_the_new_set(page, tmp_path: Path) -> None:
    from tests.component.test_restart import launched

    with launched(tmp_path) as (url, _proc, log, probe_log, _data):
        page.goto(url)
        page.get_by_role("tab", name="Extensions").click()
        page.locator("#extensions_enabled label", has_text="probe").click()
        page.evaluate("window.beforeRestart = true")
        page.locator("#extensions_apply").click()
        page.locator("#extensions_result", has_text="Restarting").wait_for(timeout=20000)
        page.wait_for_event("load", timeout=120000)  # the page reloads by itself once the server is back
        assert page.evaluate("window.beforeRestart === undefined")
        assert probe_log.exists(), log.read_text()
        page.get_by_role("tab", name="Extensions").click()
        assert page.locator("#extensions_enabled label", has_text="probe").locator("input").is_checked()
