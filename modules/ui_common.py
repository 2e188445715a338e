"""L4 adapter (Gradio): what every generation tab shares: the top row, the parameter rows, and the job runner
that queues a request through job_runner and streams progress, live previews and the result to the page; and
A1111's `modules.ui_common` names that extensions import."""

from __future__ import annotations

import html
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import gradio as gr
from pydantic import ValidationError as PydanticValidationError

from modules import job_runner, sd_samplers
from modules.errors import WebUIError
from modules.runtime import Runtime

PRIVATE = {"api_visibility": "private"}
POLL_SECONDS = 0.5


# --- status and errors -----------------------------------------------------------------------------------------
def progress_html(fraction: float, text: str) -> str:
    pct = max(0.0, min(fraction, 1.0)) * 100
    return (f'<div class="progressDiv"><div class="progress" style="width:{pct:.1f}%">'
            f'<span class="progress-text">{html.escape(text)}</span></div></div>')


def status_text(runtime: Runtime, job: Any) -> tuple[float, str]:
    """(fraction done, the progress bar's text) for a queued or running job."""
    if job.status == "queued":
        text = f"In queue, position {runtime.jobs.position(job)}"
        current = runtime.jobs.current
        if current is not None and current is not job:
            text += f" (waiting for: {current.state.textinfo or current.name})"
        return 0.0, text
    st = job.state
    if st.textinfo and st.sampling_steps == 0:
        return st.progress, st.textinfo  # e.g. the checkpoint load a job waits for
    eta = st.eta()
    step = f"Image {min(st.job_no + 1, max(st.job_count, 1))}/{max(st.job_count, 1)}, step {st.sampling_step}/" \
           f"{st.sampling_steps}"
    return st.progress, step + (f", ETA {eta:.0f}s" if eta is not None else "")


def validation_message(e: PydanticValidationError) -> str:
    parts = []
    for err in e.errors():
        where = ".".join(str(x) for x in err.get("loc", ())) or "request"
        parts.append(f"{where}: {err.get('msg')}")
    return "; ".join(parts)


def error_html(text: str) -> str:
    return f'<div class="error">{html.escape(text)}</div>'


def infotext_html(text: str) -> str:
    return f"<p>{html.escape(text).replace(chr(10), '<br>')}</p>"


# --- the job runner ----------------------------------------------------------------------------------------------
RESULT_OUTPUTS = ("gallery", "generation_info", "task_id", "progress", "html_log", "html_info", "infotext")


def run_generation(runtime: Runtime, make_params: Callable[[], Any], script_args: tuple,
                   batch: dict[str, Any] | None = None, request: Any = None) -> Iterator[tuple]:
    """Build the request, queue it through job_runner, then yield RESULT_OUTPUTS updates until it is done:
    live previews and progress while it runs, then the images and infotext (or the error)."""
    try:
        params = make_params()
        job = job_runner.submit(runtime, job_runner.JobRequest(params, script_args=tuple(script_args), batch=batch))
    except PydanticValidationError as e:
        yield gr.update(), "", "", "", error_html(validation_message(e)), "", ""
        return
    except (WebUIError, TypeError, ValueError) as e:  # refused before queueing: say why, nothing ran
        yield gr.update(), "", "", "", error_html(str(e)), "", ""
        return
    page = page_jobs.add(request, job)
    try:
        yield from follow_job(runtime, job, page)
    finally:
        page_jobs.remove(page, job)


class _PageJobs:
    """Which queued or running jobs each open page started, so one page shows one progress line for all of them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, list[Any]] = {}

    def add(self, request: gr.Request | None, job: Any) -> str:
        page = getattr(request, "session_hash", None) or job.id
        with self._lock:
            self._jobs.setdefault(page, []).append(job)
        return page

    def remove(self, page: str, job: Any) -> None:
        with self._lock:
            jobs = self._jobs.get(page, [])
            if job in jobs:
                jobs.remove(job)
            if not jobs:
                self._jobs.pop(page, None)

    def others(self, page: str, job: Any) -> list[Any]:
        with self._lock:
            return [j for j in self._jobs.get(page, []) if j is not job]


page_jobs = _PageJobs()


def follow_job(runtime: Runtime, job: Any, page: str) -> Iterator[tuple]:
    """Stream one job's progress, preview and result into the tab's outputs.

    While the job waits behind another job of the same page, that job's stream owns the outputs (and says how
    many more are queued); this one stays silent until its turn.
    """
    skip7 = (gr.skip(),) * 7
    if runtime.jobs.position(job) > 0:
        gr.Info(f"Generate queued: {runtime.jobs.position(job)} job(s) ahead of it.")
    last_preview = -1
    while not job.done.wait(0.5):
        if job.status == "queued":
            current = runtime.jobs.current
            if current is not None and current in page_jobs.others(page, job):
                yield skip7
                continue
        fraction, text = status_text(runtime, job)
        queued = sum(1 for j in page_jobs.others(page, job) if j.status == "queued")
        if queued and job.status == "running":
            text += f" · {queued} more queued"
        preview = gr.update()
        if job.state.id_live_preview != last_preview and job.state.current_image is not None:
            last_preview = job.state.id_live_preview
            preview = [job.state.current_image]
        yield preview, "", job.id, progress_html(fraction, text), "", gr.update(), gr.update()
    if job.status == "failed":
        yield gr.update(), "", job.id, "", error_html(job.error or "failed"), "", ""
        return
    processed = job.result
    taken = (job.finished or time.time()) - (job.started or time.time())
    first = processed.infotexts[processed.index_of_first_image] if processed.infotexts else ""
    # data-job: page scripts (generate forever) tell two runs with the same timing apart.
    log_html = f'<p class="time-taken" data-job="{html.escape(job.id)}">Time taken: {taken:.1f} sec.</p>'
    if processed.errors:
        log_html += error_html("; ".join(processed.errors))
    yield (processed.images, processed.js(), job.id, "", log_html,
           f"<p>{html.escape(first).replace(chr(10), '<br>')}</p>", first)


# --- parameter rows ----------------------------------------------------------------------------------------------
TOOLTIPS: dict[str, str] = {}  # elem_id -> hover text, put on the page as `title` by javascript/hints.js


def tool_button(label: str, elem_id: str, tooltip: str) -> gr.Button:
    """A small icon button (A1111's ToolButton); its tooltip is registered for the page's hints."""
    TOOLTIPS[elem_id] = tooltip
    return gr.Button(label, elem_id=elem_id, elem_classes=["tool"], scale=0, min_width=40)


def sampler_row(tab: str, c: dict[str, Any]) -> None:
    samplers = sd_samplers.sampler_names()
    with gr.Row(elem_id=f"{tab}_sampler_row"):
        missing = ", ".join(sd_samplers.MISSING_SAMPLERS)
        c["sampler_name"] = gr.Dropdown(samplers, value=samplers[0], label="Sampling method",
                                        elem_id=f"{tab}_sampling",
                                        info=f"Not available yet: {missing}" if missing else None)
        c["scheduler"] = gr.Dropdown(sd_samplers.scheduler_labels(), value="Automatic", label="Schedule type",
                                     elem_id=f"{tab}_scheduler")
        c["steps"] = gr.Slider(1, 150, value=20, step=1, label="Sampling steps", elem_id=f"{tab}_steps")


def size_and_batch_row(tab: str, c: dict[str, Any]) -> None:
    with gr.Row(elem_id=f"{tab}_dimensions_row"):
        with gr.Column(scale=4):
            c["width"] = gr.Slider(64, 2048, value=512, step=8, label="Width", elem_id=f"{tab}_width")
            c["height"] = gr.Slider(64, 2048, value=512, step=8, label="Height", elem_id=f"{tab}_height")
        c["swap"] = tool_button("⇅", f"{tab}_res_switch_btn", "Switch width/height")
        with gr.Column(scale=2):
            c["n_iter"] = gr.Slider(1, 100, value=1, step=1, label="Batch count", elem_id=f"{tab}_batch_count")
            c["batch_size"] = gr.Slider(1, 8, value=1, step=1, label="Batch size", elem_id=f"{tab}_batch_size")


def cfg_row(tab: str, c: dict[str, Any]) -> None:
    c["cfg_scale"] = gr.Slider(1, 30, value=7.0, step=0.5, label="CFG Scale", elem_id=f"{tab}_cfg_scale")


def seed_rows(tab: str, c: dict[str, Any]) -> None:
    with gr.Row(elem_id=f"{tab}_seed_row"):
        c["seed"] = gr.Number(label="Seed", value=-1, precision=0, elem_id=f"{tab}_seed", scale=4)
        c["random_seed"] = tool_button("🎲️", f"{tab}_random_seed", "Set seed to -1 (a new random seed each time)")
        c["reuse_seed"] = tool_button("♻️", f"{tab}_reuse_seed", "Reuse the seed of the last generation")
        c["subseed_show"] = gr.Checkbox(label="Extra", elem_id=f"{tab}_subseed_show", value=False, scale=1)
    with gr.Group(visible=False, elem_id=f"{tab}_seed_extras") as extras:
        with gr.Row():
            c["subseed"] = gr.Number(label="Variation seed", value=-1, precision=0, elem_id=f"{tab}_subseed")
            c["subseed_strength"] = gr.Slider(0, 1, value=0, step=0.01, label="Variation strength",
                                              elem_id=f"{tab}_subseed_strength")
        with gr.Row():
            c["seed_resize_from_w"] = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from width",
                                                elem_id=f"{tab}_seed_resize_from_w")
            c["seed_resize_from_h"] = gr.Slider(0, 2048, value=0, step=8, label="Resize seed from height",
                                                elem_id=f"{tab}_seed_resize_from_h")
    c["seed_extras"] = extras


SEED_FIELDS = ("seed", "subseed_show", "subseed", "subseed_strength", "seed_resize_from_w", "seed_resize_from_h")


def seed_params(v: dict[str, Any]) -> dict[str, Any]:
    """The seed rows' values as request fields (the Extra row off means no variation, as A1111)."""
    extra = bool(v.get("subseed_show"))
    return {
        "seed": int(v.get("seed") or -1),
        "subseed": int(v.get("subseed") or -1) if extra else -1,
        "subseed_strength": float(v.get("subseed_strength") or 0) if extra else 0.0,
        "seed_resize_from_w": (int(v.get("seed_resize_from_w") or 0) or -1) if extra else -1,
        "seed_resize_from_h": (int(v.get("seed_resize_from_h") or 0) or -1) if extra else -1,
    }


def result_column(tab: str, c: dict[str, Any]) -> None:
    """Progress, gallery (output only, never an upload target), infotext and the log under it."""
    c["progress"] = gr.HTML(elem_id=f"{tab}_progress")
    c["gallery"] = gr.Gallery(label="Output", show_label=False, elem_id=f"{tab}_gallery", columns=4,
                              format="png", preview=True, height="auto", interactive=False)
    c["generation_info"] = gr.Textbox(visible=False, elem_id=f"generation_info_{tab}")
    c["task_id"] = gr.Textbox(visible=False, elem_id=f"{tab}_task_id")
    c["html_info"] = gr.HTML(elem_id=f"html_info_{tab}")
    c["html_log"] = gr.HTML(elem_id=f"html_log_{tab}")
    # The plain infotext (for copying); shown once, as HTML above.
    c["infotext"] = gr.Textbox(elem_id=f"{tab}_info", visible=False)


def send_buttons(tab: str, c: dict[str, Any]) -> None:
    """A1111's "Send to img2img / inpaint" buttons under a gallery (wired once both tabs exist: send_to)."""
    with gr.Row(elem_id=f"{tab}_send_buttons", elem_classes=["image-buttons"]):
        c["send_to_img2img"] = gr.Button("Send to img2img", elem_id=f"{tab}_send_to_img2img", size="sm")
        c["send_to_inpaint"] = gr.Button("Send to inpaint", elem_id=f"{tab}_send_to_inpaint", size="sm")


def _first_result(gallery: Any, info_json: str) -> Any:
    """The gallery's first generated image (after the grid) as a PIL image, or None."""
    from PIL import Image

    items = list(gallery or [])
    try:
        first = int(json.loads(info_json or "{}").get("index_of_first_image", 0))
    except (TypeError, ValueError, AttributeError):
        first = 0
    if not items:
        return None
    item = items[min(first, len(items) - 1)]
    value = item[0] if isinstance(item, (list, tuple)) else item
    if isinstance(value, Image.Image):
        return value
    path = value if isinstance(value, str) else getattr(value, "path", None) or (value or {}).get("image", {}).get(
        "path")
    return Image.open(path) if path else None


def send_to(source: dict[str, Any], img2img: dict[str, Any], tabs: Any) -> None:
    """Wire a tab's Send buttons: the result and its prompts go to img2img (or its Inpaint editor)."""

    def to_img2img(gallery: Any, info: str, prompt: str, negative: str) -> tuple:
        image = _first_result(gallery, info)
        return image, prompt, negative, gr.Tabs(selected="img2img"), gr.Tabs(selected="img2img_img2img_tab"), 0

    def to_inpaint(gallery: Any, info: str, prompt: str, negative: str) -> tuple:
        image = _first_result(gallery, info)
        editor = None if image is None else {"background": image, "layers": [], "composite": image}
        return editor, prompt, negative, gr.Tabs(selected="img2img"), gr.Tabs(selected="img2img_inpaint_tab"), 2

    inputs = [source["gallery"], source["generation_info"], source["prompt"], source["negative_prompt"]]
    rest = [img2img["prompt"], img2img["negative_prompt"], tabs, img2img["mode_tabs"], img2img["mode"]]
    source["send_to_img2img"].click(to_img2img, inputs=inputs, outputs=[img2img["init_img"], *rest], **PRIVATE)
    source["send_to_inpaint"].click(to_inpaint, inputs=inputs, outputs=[img2img["init_img_with_mask"], *rest],
                                    **PRIVATE)


def wire_common(runtime: Runtime, c: dict[str, Any]) -> None:
    """Interrupt/skip of this tab's job, width/height swap, seed buttons and the Extra seed row."""

    def interrupt(task_id: str) -> None:
        runtime.jobs.interrupt(runtime.jobs.get(task_id) if task_id else None)

    def skip(task_id: str) -> None:
        runtime.jobs.skip(runtime.jobs.get(task_id) if task_id else None)

    c["interrupt"].click(interrupt, inputs=[c["task_id"]], concurrency_limit=None, **PRIVATE)
    c["skip"].click(skip, inputs=[c["task_id"]], concurrency_limit=None, **PRIVATE)
    c["swap"].click(lambda w, h: (h, w), inputs=[c["width"], c["height"]], outputs=[c["width"], c["height"]],
                    **PRIVATE)
    c["random_seed"].click(lambda: -1, outputs=[c["seed"]], **PRIVATE)
    c["subseed_show"].change(lambda x: gr.update(visible=bool(x)), inputs=[c["subseed_show"]],
                             outputs=[c["seed_extras"]], **PRIVATE)

    def reuse_seed(gen_info: str) -> Any:
        try:
            return json.loads(gen_info).get("seed", -1)
        except (TypeError, ValueError, AttributeError):
            return gr.update()

    c["reuse_seed"].click(reuse_seed, inputs=[c["generation_info"]], outputs=[c["seed"]], **PRIVATE)


def top_row(runtime: Runtime, tab: str, c: dict[str, Any]) -> None:
    """Prompt and negative prompt with token counters, Generate / Interrupt / Skip, paste and clear, styles."""
    from modules.ui_toprow import create_styles_ui, create_token_counters

    with gr.Row(elem_id=f"{tab}_toprow"):
        with gr.Column(scale=6, elem_id=f"{tab}_prompt_container"):
            c["prompt"] = gr.Textbox(label="Prompt", elem_id=f"{tab}_prompt", lines=3, show_label=False,
                                     placeholder="Prompt\n(Press Ctrl+Enter to generate, Alt+Enter to skip, "
                                                 "Esc to interrupt)")
            c["negative_prompt"] = gr.Textbox(label="Negative prompt", elem_id=f"{tab}_neg_prompt", lines=3,
                                              show_label=False, placeholder="Negative prompt")
            create_token_counters(runtime, tab, c)
        with gr.Column(scale=1, elem_id=f"{tab}_actions_column"):
            with gr.Row():
                c["interrupt"] = gr.Button("Interrupt", elem_id=f"{tab}_interrupt")
                c["skip"] = gr.Button("Skip", elem_id=f"{tab}_skip")
            c["generate"] = gr.Button("Generate", variant="primary", elem_id=f"{tab}_generate")
            with gr.Row():
                c["paste"] = tool_button("↙️", "paste" if tab == "txt2img" else f"{tab}_paste",
                                         "Read generation parameters from the prompt or the last generation")
                c["clear"] = tool_button("🗑️", f"{tab}_clear_prompt", "Clear prompt")
            create_styles_ui(runtime, tab, c)
    c["clear"].click(lambda: ("", ""), outputs=[c["prompt"], c["negative_prompt"]], **PRIVATE)


# ---------------------------------------------------------------------------------------------------------------
# A1111's `modules.ui_common` names, for extensions (extension-surface.md: save_files, plaintext_to_html,
# create_output_panel, create_refresh_button) and the Gradio side of modules.infotext_utils.
# ---------------------------------------------------------------------------------------------------------------

refresh_symbol = "\U0001f504"  # 🔄
folder_symbol = "\U0001f4c2"  # 📂
save_style_symbol = "\U0001f4be"  # 💾
paste_symbol = "\u2199\ufe0f"  # ↙
clear_prompt_symbol = "\U0001f5d1\ufe0f"  # 🗑️
apply_style_symbol = "\U0001f4cb"  # 📋


def plaintext_to_html(text: str, classname: str | None = None) -> str:
    """Escape text into paragraphs, one per line (A1111's helper)."""
    content = "<br>\n".join(html.escape(x) for x in (text or "").split("\n"))
    return f"<p class='{classname}'>{content}</p>" if classname else f"<p>{content}</p>"


def gr_show(visible: bool = True) -> dict[str, Any]:
    return gr.update(visible=visible)


def _runtime() -> Any:
    from modules import shared

    return shared._need_runtime("ui_common")


def save_files(js_data: str, images: list[Any], do_make_zip: bool, index: int | None) -> tuple[Any, str]:
    """A1111's Save/Zip handler: save the chosen gallery image(s) with their infotext; (file list, HTML log)."""
    from modules.errors import WebUIError
    from modules.output_actions import save_selected

    rt = _runtime()
    files = []
    for item in images or []:
        value = item[0] if isinstance(item, (list, tuple)) else item
        if isinstance(value, dict):
            value = value.get("name") or value.get("path") or (value.get("image") or {}).get("path")
        files.append(value if isinstance(value, str) else getattr(value, "path", value))
    index = None if index is None or index < 0 else int(index)
    try:
        written = save_selected(rt.output_dir("outdir_save"), files, js_data, index, rt.opts, make_zip=do_make_zip)
    except (WebUIError, OSError) as e:
        return gr.update(visible=False), plaintext_to_html(str(e), "error")
    return gr.update(value=written, visible=True), plaintext_to_html(f"Saved: {written[0]}" if written else "")


def create_refresh_button(refresh_component: Any, refresh_method: Callable[[], Any],
                          refreshed_args: dict[str, Any] | Callable[[], dict[str, Any]], elem_id: str) -> Any:
    """A 🔄 tool button that calls `refresh_method`, then sets `refreshed_args` (or what it returns) on the
    component(s), as A1111's helper of the same name."""
    from modules.ui_components import ToolButton

    components = refresh_component if isinstance(refresh_component, list) else [refresh_component]

    def refresh() -> Any:
        refresh_method()
        args = refreshed_args() if callable(refreshed_args) else refreshed_args
        updates = [gr.update(**(args or {})) for _ in components]
        return updates if len(updates) > 1 else updates[0]

    button = ToolButton(value=refresh_symbol, elem_id=elem_id)
    button.click(fn=refresh, inputs=[], outputs=components, api_visibility="private")
    return button


class OutputPanel:
    """What create_output_panel returns (A1111 1.6+: a dataclass with these fields, also unpackable)."""

    def __init__(self, gallery: Any, generation_info: Any, infotext: Any, html_log: Any) -> None:
        self.gallery, self.generation_info, self.infotext, self.html_log = gallery, generation_info, infotext, html_log
        self.button_upscale = None

    def __iter__(self) -> Any:
        return iter((self.gallery, self.generation_info, self.infotext, self.html_log))


def create_output_panel(tabname: str, outdir: str, toprow: Any = None) -> OutputPanel:
    """A gallery with the generation info and log under it, plus Save/Zip (saving through save_files)."""
    with gr.Column(elem_id=f"{tabname}_results"):
        gallery = gr.Gallery(label="Output", show_label=False, elem_id=f"{tabname}_gallery", columns=4,
                             interactive=False)
        generation_info = gr.Textbox(visible=False, elem_id=f"generation_info_{tabname}")
        with gr.Row():
            save = gr.Button("Save", elem_id=f"save_{tabname}")
            save_zip = gr.Button("Zip", elem_id=f"save_zip_{tabname}")
        download = gr.File(None, file_count="multiple", interactive=False, visible=False,
                           elem_id=f"download_files_{tabname}")
        infotext = gr.HTML(elem_id=f"html_info_{tabname}", elem_classes="infotext")
        html_log = gr.HTML(elem_id=f"html_log_{tabname}", elem_classes="html-log")
    selected = gr.State(-1)

    def on_select(evt: gr.SelectData) -> int:
        return evt.index

    gallery.select(on_select, outputs=[selected], api_visibility="private")
    for button, make_zip in ((save, False), (save_zip, True)):
        button.click(lambda info, imgs, i, z=make_zip: save_files(info, imgs, z, i),
                     inputs=[generation_info, gallery, selected], outputs=[download, html_log],
                     api_visibility="private")
    return OutputPanel(gallery, generation_info, infotext, html_log)


def create_send_buttons(tabs_list: list[str]) -> dict[str, Any]:
    """infotext_utils.create_buttons: one "Send to <tab>" button per tab (ids `<tab>_tab`, as A1111)."""
    names = {"img2img": "Send to img2img", "inpaint": "Send to inpaint", "extras": "Send to extras",
             "txt2img": "Send to txt2img"}
    return {tab: gr.Button(names.get(tab, f"Send to {tab}"), elem_id=f"{tab}_tab") for tab in tabs_list}


def connect_paste_binding(binding: Any, target: dict[str, Any]) -> None:
    """Wire one ParamBinding: its button parses the source infotext and fills the target tab's fields."""
    from modules import infotext_utils

    fields = list(target.get("fields") or [])
    wanted = set(binding.paste_field_names or [])
    if wanted:
        fields = [f for f in fields if not isinstance(f[1], str) or f[1] in wanted]
    components = [f[0] for f in fields]
    if not components or binding.source_text_component is None:
        return

    def paste(text: str) -> list[Any]:
        params = infotext_utils.parse_generation_parameters(text or "")
        values = infotext_utils.values_for_fields(params, fields)
        return [gr.update() if v is None else gr.update(value=v) for v in values]

    binding.paste_button.click(paste, inputs=[binding.source_text_component], outputs=components,
                               api_visibility="private")
