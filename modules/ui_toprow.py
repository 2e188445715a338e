"""Top-row extras of txt2img/img2img: token counters (with the bracket check) and the styles dropdown/editor."""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

import gradio as gr

from modules import prompt_parser, script_callbacks
from modules.errors import WebUIError
from modules.paths import CONFIGS_PATH
from modules.runtime import Runtime

log = logging.getLogger(__name__)
_fallback_tokenizer: Any = None


def _tokenizer_source(runtime: Runtime) -> Any:
    """The loaded model's conditioner, or (no model yet) the bundled CLIP tokenizer: counts are the same."""
    model = runtime.models.current
    if model is not None:
        return runtime.conditioner_for(model)
    global _fallback_tokenizer
    if _fallback_tokenizer is None:
        from transformers import CLIPTokenizer

        _fallback_tokenizer = CLIPTokenizer.from_pretrained(str(Path(CONFIGS_PATH) / "sd1"), subfolder="tokenizer")
    return _fallback_tokenizer


def token_counter_html(runtime: Runtime, text: str, styles: list[str] | None, steps: int, positive: bool) -> str:
    """`N/75` as A1111 shows it; red with the reason when brackets do not balance."""
    from modules.token_counter import count_tokens

    params = script_callbacks.BeforeTokenCounterParams(text or "", steps, list(styles or []), is_positive=positive)
    script_callbacks.before_token_counter_callback(params)  # extensions may rewrite what gets counted
    text, steps, styles, positive = params.prompt or "", params.steps, params.styles, params.is_positive
    if styles and runtime.styles is not None:
        apply = runtime.styles.apply_styles_to_prompt if positive else runtime.styles.apply_negative_styles_to_prompt
        text = apply(text, styles)
    try:
        count, limit = count_tokens(_tokenizer_source(runtime), text, max(int(steps or 1), 1), is_positive=positive,
                                    emphasis=runtime.opts.emphasis,
                                    comma_padding_backtrack=runtime.opts.comma_padding_backtrack)
    except (WebUIError, ValueError) as e:
        return f'<span class="token-counter error" title="{html.escape(str(e))}">?</span>'
    problems = prompt_parser.check_brackets(text)
    css = "token-counter error" if problems else "token-counter"
    title = f' title="{html.escape(" ".join(problems))}"' if problems else ""
    return f'<span class="{css}"{title}>{count}/{limit}</span>'


def create_token_counter(runtime: Runtime, tab: str, c: dict[str, Any], positive: bool) -> None:
    """The counter of one prompt box (placed right after it), recomputed on the server after edits."""
    key, suffix = ("token_counter", "token_counter") if positive else ("negative_token_counter",
                                                                        "negative_token_counter")
    c[key] = gr.HTML(token_counter_html(runtime, "", None, 20, positive), elem_id=f"{tab}_{suffix}",
                     elem_classes=["token-counter-box"], container=False)


def create_token_counters(runtime: Runtime, tab: str, c: dict[str, Any]) -> None:
    """Both counters, for tabs that place them together."""
    create_token_counter(runtime, tab, c, positive=True)
    create_token_counter(runtime, tab, c, positive=False)


def wire_token_counters(runtime: Runtime, c: dict[str, Any]) -> None:
    styles = c.get("styles")
    for box, out, positive in ((c["prompt"], c["token_counter"], True),
                               (c["negative_prompt"], c["negative_token_counter"], False)):
        inputs = [box, styles, c["steps"]] if styles is not None else [box, c["steps"]]

        def update(text: str, *rest: Any, positive: bool = positive) -> str:
            chosen = rest[0] if len(rest) == 2 else None
            steps = rest[-1]
            return token_counter_html(runtime, text, chosen, steps, positive)

        # always_last: while the user types, only the latest text is counted.
        box.change(update, inputs=inputs, outputs=[out], api_visibility="private", show_progress="hidden",
                   trigger_mode="always_last", concurrency_limit=None)
        if styles is not None:
            styles.change(update, inputs=inputs, outputs=[out], api_visibility="private", show_progress="hidden",
                          trigger_mode="always_last", concurrency_limit=None)


def create_styles_ui(runtime: Runtime, tab: str, c: dict[str, Any]) -> None:
    """The styles multiselect and the Edit styles panel (save / delete / apply), as A1111's top row."""
    db = runtime.styles
    names = db.names() if db is not None else []
    c["styles"] = gr.Dropdown(names, value=[], multiselect=True, label="Styles", elem_id=f"{tab}_styles",
                              show_label=False, allow_custom_value=False)
    with gr.Accordion("🖌️ Edit styles", open=False, elem_id=f"{tab}_edit_style_accordion"):
        with gr.Row():
            name = gr.Dropdown(names, label="Style", allow_custom_value=True, elem_id=f"{tab}_edit_style_name",
                               info="Use {prompt} in a style to mark where the prompt goes.")
            refresh = gr.Button("🔄", elem_id=f"{tab}_refresh_styles", elem_classes=["tool"], scale=0,
                                min_width=40)
        style_prompt = gr.Textbox(label="Prompt", lines=2, elem_id=f"{tab}_edit_style_prompt")
        style_negative = gr.Textbox(label="Negative prompt", lines=2, elem_id=f"{tab}_edit_style_neg_prompt")
        with gr.Row():
            copy = gr.Button("📝 Copy main prompt", elem_id=f"{tab}_style_copy")
            apply = gr.Button("📋 Apply selected styles to prompt", elem_id=f"{tab}_style_apply")
            save = gr.Button("Save", variant="primary", elem_id=f"{tab}_edit_style_save")
            delete = gr.Button("Delete", variant="stop", elem_id=f"{tab}_edit_style_delete")
        status = gr.HTML(elem_id=f"{tab}_edit_style_status")

    def choices() -> list[str]:
        if db is None:
            return []
        db.refresh_if_changed()
        return db.names()

    def pick(style_name: str | None) -> tuple[str, str]:
        style = db.styles.get(style_name or "") if db is not None else None
        return (style.prompt, style.negative_prompt) if style else (gr.update(), gr.update())

    def do_save(style_name: str | None, prompt: str, negative: str, selected: list[str]) -> tuple:
        from modules.styles import PromptStyle

        if db is None or not (style_name or "").strip():
            return gr.update(), gr.update(), "<p class='error'>Give the style a name.</p>"
        try:
            db.save_style(PromptStyle(style_name.strip(), prompt or "", negative or "", None))
        except (WebUIError, OSError, ValueError) as e:
            return gr.update(), gr.update(), f"<p class='error'>{html.escape(str(e))}</p>"
        names_now = choices()
        return (gr.update(choices=names_now, value=[s for s in selected if s in names_now]),
                gr.update(choices=names_now), f"<p>Saved style {html.escape(style_name.strip())}.</p>")

    def do_delete(style_name: str | None, selected: list[str]) -> tuple:
        if db is None or not style_name:
            return gr.update(), gr.update(), ""
        try:
            db.delete_style(style_name)
        except (WebUIError, OSError, ValueError, KeyError) as e:
            return gr.update(), gr.update(), f"<p class='error'>{html.escape(str(e))}</p>"
        names_now = choices()
        return (gr.update(choices=names_now, value=[s for s in selected if s in names_now]),
                gr.update(choices=names_now, value=None), f"<p>Deleted style {html.escape(style_name)}.</p>")

    def do_apply(prompt: str, negative: str, selected: list[str]) -> tuple[str, str, list[str]]:
        if db is None or not selected:
            return prompt, negative, selected
        return (db.apply_styles_to_prompt(prompt or "", selected),
                db.apply_negative_styles_to_prompt(negative or "", selected), [])

    def do_refresh() -> tuple:
        names_now = choices()
        return gr.update(choices=names_now), gr.update(choices=names_now)

    private = {"api_visibility": "private"}
    name.change(pick, inputs=[name], outputs=[style_prompt, style_negative], **private)
    save.click(do_save, inputs=[name, style_prompt, style_negative, c["styles"]],
               outputs=[c["styles"], name, status], **private)
    delete.click(do_delete, inputs=[name, c["styles"]], outputs=[c["styles"], name, status], **private)
    copy.click(lambda p, n: (p, n), inputs=[c["prompt"], c["negative_prompt"]],
               outputs=[style_prompt, style_negative], **private)
    apply.click(do_apply, inputs=[c["prompt"], c["negative_prompt"], c["styles"]],
                outputs=[c["prompt"], c["negative_prompt"], c["styles"]], **private)
    refresh.click(do_refresh, outputs=[c["styles"], name], **private)
