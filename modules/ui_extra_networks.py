"""Extra-network card pages (Textual Inversion, Checkpoints, Lora, Hypernetworks) with a metadata editor."""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

log = logging.getLogger(__name__)

PREVIEW_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif")
SORT_FIELDS = ("Path", "Name", "Date Created", "Date Modified")
SD_VERSIONS = ("Unknown", "SD1", "SD2", "SDXL")
_THUMB = 256
_preview_cache: dict[tuple[str, float], str | None] = {}


@dataclass
class Card:
    """One item of a page: what is shown and what clicking it does."""

    name: str
    filename: Path
    folder: str = ""
    prompt: str = ""  # text inserted into (or removed from) the prompt
    negative: str = ""
    description: str = ""
    search_terms: list[str] = field(default_factory=list)
    preview: str | None = None  # data: URI
    mtime: float = 0.0
    ctime: float = 0.0


def user_metadata_path(filename: Path) -> Path:
    return filename.with_suffix(".json")


def read_user_metadata(filename: Path) -> dict[str, Any]:
    """A1111's `<model>.json` beside the file; a `<model>.txt` gives the description when the json has none."""
    data: dict[str, Any] = {}
    try:
        loaded = json.loads(user_metadata_path(filename).read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            data = loaded
    except (OSError, ValueError):
        pass
    if not data.get("description"):
        with contextlib.suppress(OSError):
            data["description"] = filename.with_suffix(".txt").read_text(encoding="utf-8").strip()
    return data


def write_user_metadata(filename: Path, updates: dict[str, Any]) -> Path:
    """Merge `updates` into `<model>.json` (keys other tools wrote are kept)."""
    path = user_metadata_path(filename)
    data: dict[str, Any] = {}
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
        data = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        pass
    data.update(updates)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=4, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _thumbnail_uri(data: bytes) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.thumbnail((_THUMB, _THUMB))
            out = io.BytesIO()
            im.convert("RGB").save(out, format="JPEG", quality=85)
    except (UnidentifiedImageError, OSError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def find_preview(filename: Path) -> str | None:
    """`name.png` / `name.preview.png` (any image extension), else a safetensors `modelspec.thumbnail`."""
    stem = filename.with_suffix("")
    for base in (str(stem), str(stem) + ".preview"):
        for ext in PREVIEW_EXTENSIONS:
            candidate = Path(base + ext)
            if candidate.is_file():
                key = (str(candidate), candidate.stat().st_mtime)
                if key not in _preview_cache:
                    _preview_cache[key] = _thumbnail_uri(candidate.read_bytes())
                return _preview_cache[key]
    if filename.suffix.lower() == ".safetensors" and filename.is_file():
        key = (str(filename), filename.stat().st_mtime)
        if key not in _preview_cache:
            from modules.lora import read_metadata

            thumb = read_metadata(filename).get("modelspec.thumbnail", "")
            uri = None
            m = re.match(r"data:image/[\w.+-]+;base64,(.+)$", thumb, re.S)
            if m:
                try:
                    uri = _thumbnail_uri(base64.b64decode(m.group(1), validate=False))
                except ValueError:
                    uri = None
            _preview_cache[key] = uri
        return _preview_cache[key]
    return None


def _stat_card(card: Card) -> Card:
    try:
        st = card.filename.stat()
        card.mtime, card.ctime = st.st_mtime, st.st_ctime
    except OSError:
        pass
    card.preview = find_preview(card.filename)
    return card


def _fmt_weight(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else f"{number:g}"


# --- pages -------------------------------------------------------------------------------------------------


class Page:
    """One tab of cards. Subclasses list the items and say what a click does."""

    title = ""
    page_id = ""
    allows_negative = False

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def refresh(self) -> None:
        return None

    def items(self) -> list[Card]:
        raise NotImplementedError

    def default_multiplier(self) -> float:
        return float(self.runtime.opts.get("extra_networks_default_multiplier", 1.0) or 1.0)


class LoraPage(Page):
    title, page_id, allows_negative = "Lora", "lora", True

    def refresh(self) -> None:
        self.runtime.loras.refresh()

    def items(self) -> list[Card]:
        db = self.runtime.loras
        if not db.scanned:
            db.refresh()
        use_alias = self.runtime.opts.get("lora_preferred_name", "Alias from file") == "Alias from file"
        model_version = self._model_version()
        show_all = bool(self.runtime.opts.get("lora_show_all", False))
        hide_unknown = model_version in (self.runtime.opts.get("lora_hide_unknown_for_versions") or [])
        cards = []
        for lora in db.files.values():
            user = read_user_metadata(lora.filename)
            version = str(user.get("sd version") or "Unknown")
            version = lora.sd_version if version == "Unknown" else version
            # As A1111: networks for another model family are hidden unless "show all" is set.
            if model_version and not show_all and (
                    (version != "Unknown" and version != model_version) or (version == "Unknown" and hide_unknown)):
                continue
            ref = lora.alias if use_alias and db.find(lora.alias) is lora else lora.name
            weight = user.get("preferred weight") or self.default_multiplier()
            prompt = f"<lora:{ref}:{_fmt_weight(weight)}>"
            if user.get("activation text"):
                prompt += " " + str(user["activation text"])
            cards.append(_stat_card(Card(lora.name, lora.filename, lora.folder, prompt,
                                         str(user.get("negative text") or ""), str(user.get("description") or ""),
                                         [lora.alias, str(user.get("activation text") or "")])))
        return cards


    def _model_version(self) -> str | None:
        model = getattr(self.runtime.models, "current", None)
        if model is None:
            return None
        return "SDXL" if model.is_sdxl else "SD2" if model.is_sd2 else "SD1" if model.is_sd1 else None


class HypernetworkPage(Page):
    title, page_id = "Hypernetworks", "hypernetworks"

    def items(self) -> list[Card]:
        root = self.runtime.paths.hypernetwork_dir
        cards = []
        if root.is_dir():
            for path in sorted(root.rglob("*.pt")):
                folder = path.parent.relative_to(root).as_posix()
                user = read_user_metadata(path)
                prompt = f"<hypernet:{path.stem}:{_fmt_weight(self.default_multiplier())}>"
                cards.append(_stat_card(Card(path.stem, path, "" if folder == "." else folder, prompt,
                                             description=str(user.get("description") or ""))))
        return cards


class TextualInversionPage(Page):
    title, page_id, allows_negative = "Textual Inversion", "textual_inversion", True

    def refresh(self) -> None:
        if self.runtime.embeddings is not None:
            self.runtime.embeddings.refresh(force=True)

    def items(self) -> list[Card]:
        db = self.runtime.embeddings
        if db is None:
            return []
        db.refresh()
        roots = [Path(d) for d in db.dirs]
        cards = []
        for name, emb in sorted(db.word_embeddings.items()):
            if not emb.filename:
                continue
            path = Path(emb.filename)
            folder = next((path.parent.relative_to(r).as_posix() for r in roots if path.is_relative_to(r)), "")
            user = read_user_metadata(path)
            cards.append(_stat_card(Card(name, path, "" if folder == "." else folder, name,
                                         description=str(user.get("description") or ""))))
        return cards


class CheckpointPage(Page):
    title, page_id = "Checkpoints", "checkpoints"

    def refresh(self) -> None:
        self.runtime.refresh_checkpoints()

    def items(self) -> list[Card]:
        cards = []
        for info in self.runtime.registry.list():
            folder = Path(info.name).parent.as_posix()
            user = read_user_metadata(info.path)
            cards.append(_stat_card(Card(info.name_for_extra, info.path, "" if folder == "." else folder,
                                         info.title, description=str(user.get("description") or ""),
                                         search_terms=[info.title])))
        return cards


PAGE_CLASSES: list[type[Page]] = [TextualInversionPage, CheckpointPage, LoraPage, HypernetworkPage]


# --- filtering, sorting and HTML ---------------------------------------------------------------------------


def filter_cards(cards: list[Card], search: str = "", folder: str = "All", sort: str = "Path",
                 descending: bool = False) -> list[Card]:
    needle = (search or "").strip().lower()
    out = []
    for card in cards:
        if folder not in ("", "All") and card.folder != folder and not card.folder.startswith(folder + "/"):
            continue
        haystack = " ".join([card.name, card.folder, card.description, *card.search_terms]).lower()
        if needle and needle not in haystack:
            continue
        out.append(card)
    keys: dict[str, Callable[[Card], Any]] = {
        "Path": lambda c: (c.folder.lower(), c.name.lower()),
        "Name": lambda c: c.name.lower(),
        "Date Created": lambda c: c.ctime,
        "Date Modified": lambda c: c.mtime,
    }
    return sorted(out, key=keys.get(sort, keys["Path"]), reverse=descending)


def folders(cards: list[Card]) -> list[str]:
    """The folder tree as a flat list of every folder and its parents ('a', 'a/b')."""
    found: set[str] = set()
    for card in cards:
        parts = card.folder.split("/") if card.folder else []
        for i in range(1, len(parts) + 1):
            found.add("/".join(parts[:i]))
    return ["All", *sorted(found)]


def render_cards(page_id: str, cards: list[Card]) -> str:
    """Card HTML; every text that comes from files (names, descriptions, metadata) is escaped."""
    if not cards:
        return f'<div class="extra-network-empty" id="{page_id}_empty">Nothing here. Add files to the folder ' \
               f'and press Refresh.</div>'
    parts = [f'<div class="extra-network-cards" id="{page_id}_cards">']
    for card in cards:
        preview = (f'<img class="preview" src="{html.escape(card.preview)}" alt="">' if card.preview
                   else '<div class="preview no-preview"></div>')
        parts.append(
            f'<div class="card" data-name="{html.escape(card.name)}" title="{html.escape(card.prompt)}">'
            f'{preview}<div class="actions"><div class="name">{html.escape(card.name)}</div>'
            f'<div class="description">{html.escape(card.description)}</div></div>'
            f'<button class="card-edit" data-action="edit" title="Edit metadata">🛠️</button></div>')
    parts.append("</div>")
    return "".join(parts)


def toggle_in_prompt(prompt: str, text: str, separator: str = " ") -> str:
    """Append `text`, or remove it when already there (a `<lora:name:...>` tag matches at any weight)."""
    prompt = prompt or ""
    tag = re.match(r"<(\w+):([^:>]+):[^>]*>", text)
    pattern = (re.escape(f"<{tag.group(1)}:{tag.group(2)}:") + r"[^>]*>" + re.escape(text[tag.end():])
               if tag else re.escape(text))
    found = re.search(r"(?:" + re.escape(separator) + r")?" + pattern, prompt) if text else None
    if found:
        return (prompt[: found.start()] + prompt[found.end():]).strip()
    if not prompt.strip():
        return text
    return prompt.rstrip() + separator + text


CARD_CSS = """
.extra-network-cards { display: flex; flex-wrap: wrap; gap: 0.5em; }
.extra-network-cards .card { position: relative; width: 12em; height: 16em; border-radius: 0.3em; overflow: hidden;
  cursor: pointer; background: #333; box-shadow: 0 0 3px rgba(0,0,0,.4); }
.extra-network-cards .card .preview { width: 100%; height: 100%; object-fit: cover; margin: 0; }
.extra-network-cards .card .actions { position: absolute; bottom: 0; left: 0; right: 0; padding: 0.4em;
  background: rgba(0,0,0,.65); }
/* Light text on the dark band whatever the theme's text colour (Gradio's prose colours win otherwise). */
.extra-network-cards .card .actions, .extra-network-cards .card .actions * { color: #fff !important; }
.extra-network-cards .card .name { font-weight: bold; word-break: break-word; text-shadow: 0 0 2px #000; }
.extra-network-cards .card .description { font-size: 0.8em; max-height: 4em; overflow: hidden; }
.extra-network-cards .card .card-edit { position: absolute; top: 0.3em; right: 0.3em; display: none; }
.extra-network-cards .card:hover .card-edit { display: block; }
"""

# Card clicks reach Python as one `click` event carrying the card's name and the action (use or edit).
_CARDS_JS = """
element.addEventListener('click', (e) => {
  const card = e.target.closest('.card');
  if (!card) return;
  const button = e.target.closest('[data-action]');
  trigger('click', {name: card.dataset.name, action: button ? button.dataset.action : 'use'});
});
"""


def create_extra_networks_ui(runtime: Any, tabname: str, c: dict[str, Any]) -> dict[str, Any]:
    """The card pages for one tab (`txt2img`), inserting into `c["prompt"]` / `c["negative_prompt"]`.

    Called inside the tab's `{tabname}_extra_tabs` Tabs, after its Generation tab: each page is a sub-tab
    under the prompts, as in A1111.
    """
    prompt, negative = c["prompt"], c["negative_prompt"]
    out: dict[str, Any] = {}
    from modules.ui_extra_networks_pages import extension_pages

    for page in [cls(runtime) for cls in PAGE_CLASSES] + extension_pages(runtime):  # extensions' pages last
        out[page.page_id] = _create_page(runtime, page, tabname, prompt, negative)
    return out


def _initial_html(page: Page, pid: str) -> str:
    try:
        return render_cards(pid, filter_cards(page.items()))
    except Exception:  # the page still builds; Refresh shows the problem
        log.exception("listing %s", page.title)
        return ""


def _create_page(runtime: Any, page: Page, tabname: str, prompt: Any, negative: Any) -> dict[str, Any]:
    pid = f"{tabname}_{page.page_id}"
    with gr.Tab(page.title, elem_id=f"{pid}_tab") as tab:
        with gr.Row(elem_id=f"{pid}_controls"):
            search = gr.Textbox(label="Search", placeholder="Search...", elem_id=f"{pid}_search", scale=4)
            folder = gr.Dropdown(label="Folder", choices=["All"], value="All", elem_id=f"{pid}_folder", scale=2)
            sort = gr.Dropdown(label="Sort", choices=list(SORT_FIELDS), elem_id=f"{pid}_sort", scale=2,
                               value=runtime.opts.get("extra_networks_card_order_field", "Path"))
            descending = gr.Checkbox(label="Descending", elem_id=f"{pid}_descending",
                                     value=runtime.opts.get("extra_networks_card_order", "Ascending") == "Descending")
            refresh = gr.Button("🔄 Refresh", elem_id=f"{pid}_refresh", scale=1)
        cards_html = gr.HTML(_initial_html(page, pid), elem_id=f"{pid}_cards_html", js_on_load=_CARDS_JS,
                             css_template=CARD_CSS)
        with gr.Group(visible=False, elem_id=f"{pid}_editor") as editor:
            editor_title = gr.Markdown("", elem_id=f"{pid}_editor_title")
            description = gr.Textbox(label="Description", lines=3, elem_id=f"{pid}_editor_description")
            with gr.Row(visible=page.page_id == "lora"):
                activation = gr.Textbox(label="Activation text", elem_id=f"{pid}_editor_activation")
                weight = gr.Number(label="Preferred weight", value=0, elem_id=f"{pid}_editor_weight")
                neg_text = gr.Textbox(label="Negative prompt", elem_id=f"{pid}_editor_negative")
                version = gr.Dropdown(label="Stable Diffusion version", choices=list(SD_VERSIONS), value="Unknown",
                                      elem_id=f"{pid}_editor_version")
            with gr.Row():
                save = gr.Button("Save", variant="primary", elem_id=f"{pid}_editor_save")
                cancel = gr.Button("Cancel", elem_id=f"{pid}_editor_cancel")
            editing = gr.State("")
        status = gr.HTML("", elem_id=f"{pid}_status")

    def current(search_v: str, folder_v: str, sort_v: str, desc_v: bool) -> tuple[Any, Any]:
        cards = page.items()
        choices = folders(cards)
        folder_v = folder_v if folder_v in choices else "All"
        shown = filter_cards(cards, search_v, folder_v, sort_v, bool(desc_v))
        return render_cards(pid, shown), gr.update(choices=choices, value=folder_v)

    def on_refresh(*values: Any) -> tuple[Any, Any]:
        try:
            page.refresh()
        except Exception as e:  # a broken file must not break the page
            log.exception("refreshing %s", page.title)
            gr.Warning(f"Refresh failed: {e}")
        return current(*values)

    controls = [search, folder, sort, descending]
    for comp in (search, folder, sort, descending):
        comp.change(current, inputs=controls, outputs=[cards_html, folder], api_visibility="private",
                    show_progress="hidden")
    refresh.click(on_refresh, inputs=controls, outputs=[cards_html, folder], api_visibility="private")
    tab.select(current, inputs=controls, outputs=[cards_html, folder], api_visibility="private",
               show_progress="hidden")

    def find(name: str) -> Card | None:
        return next((card for card in page.items() if card.name == name), None)

    def on_card(prompt_v: str, negative_v: str, evt: gr.EventData) -> tuple:
        data = getattr(evt, "_data", None) or {}
        name, action = str(data.get("name", "")), str(data.get("action", "use"))
        card = find(name)
        nothing = (gr.skip(),) * 10
        if card is None:
            return (*nothing[:9], f"<div class='error'>{html.escape(name)} is no longer there; press Refresh.</div>",
                    gr.skip())
        if action == "edit":
            user = read_user_metadata(card.filename)
            version = str(user.get("sd version") or "Unknown")
            return (gr.skip(), gr.skip(), gr.update(visible=True), f"### {html.escape(card.name)}",
                    str(user.get("description") or ""), str(user.get("activation text") or ""),
                    float(user.get("preferred weight") or 0), str(user.get("negative text") or ""),
                    version if version in SD_VERSIONS else "Unknown", "", ) + (card.name,)
        if page.page_id == "checkpoints":
            try:
                title = runtime.switch_checkpoint(card.prompt)
                message = f"Loaded {html.escape(title)}"
            except Exception as e:  # noqa: BLE001 - shown to the user, the previous model keeps serving
                message = f"<div class='error'>{html.escape(str(e))}</div>"
            return (*nothing[:9], message, gr.skip())
        separator = runtime.opts.get("extra_networks_add_text_separator", " ") or " "
        new_prompt = toggle_in_prompt(prompt_v, card.prompt, separator)
        new_negative = negative_v
        if card.negative and page.allows_negative:
            added = len(new_prompt) > len(prompt_v or "")
            if added != (card.negative in (negative_v or "")):  # add with the card, remove with it
                new_negative = toggle_in_prompt(negative_v, card.negative, separator)
        return (new_prompt, new_negative, *nothing[:7], "", gr.skip())

    editor_outputs = [prompt, negative, editor, editor_title, description, activation, weight, neg_text, version,
                      status, editing]
    cards_html.click(on_card, inputs=[prompt, negative], outputs=editor_outputs, api_visibility="private",
                     show_progress="hidden")

    def on_save(name: str, desc: str, act: str, w: float, neg: str, ver: str, *values: Any) -> tuple:
        card = find(name)
        if card is None:
            return gr.update(visible=False), "<div class='error'>Nothing to save.</div>", *current(*values)
        updates: dict[str, Any] = {"description": desc or ""}
        if page.page_id == "lora":
            updates.update({"activation text": act or "", "preferred weight": float(w or 0),
                            "negative text": neg or "", "sd version": ver or "Unknown"})
        try:
            path = write_user_metadata(card.filename, updates)
        except OSError as e:
            return gr.update(), f"<div class='error'>Could not save: {html.escape(str(e))}</div>", *current(*values)
        return gr.update(visible=False), f"Saved {html.escape(path.name)}", *current(*values)

    save.click(on_save, inputs=[editing, description, activation, weight, neg_text, version, *controls],
               outputs=[editor, status, cards_html, folder], api_visibility="private")
    cancel.click(lambda: gr.update(visible=False), outputs=[editor], api_visibility="private")
    return {"search": search, "folder": folder, "sort": sort, "refresh": refresh, "cards": cards_html,
            "editor": editor, "load": (current, controls, [cards_html, folder])}


# A1111's page API lives in its own module; extensions reach it under this module's name.
from modules.ui_extra_networks_pages import ExtraNetworksPage, extra_pages, quote_js, register_page  # noqa: E402,F401
