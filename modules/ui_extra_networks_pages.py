"""A1111's extra-network page API for extensions: `ExtraNetworksPage`, `register_page`, `extra_pages`, `quote_js`.

An extension subclasses ExtraNetworksPage (A1111's methods: `refresh`, `list_items`, `create_item`,
`allowed_directories_for_previews`, `find_preview`, `find_description`, `search_terms_from_path`...) and calls
`register_page(MyPage())`, usually from an `on_before_ui` callback. modules.ui_extra_networks shows every
registered page as one more tab of cards beside ours, through `ExtensionPage` below; a page that fails to
list its items shows an empty tab and logs why, and the rest of the UI is unaffected.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

extra_pages: list[ExtraNetworksPage] = []
"""Pages registered by extensions (A1111 also lists its built-in pages here; ours are modules.ui_extra_networks')."""

allowed_dirs: set[str] = set()


def quote_js(s: str) -> str:
    """A JS string literal for `s` (A1111's helper; item "prompt" values are JS expressions)."""
    return json.dumps(str(s), ensure_ascii=False)


def register_page(page: ExtraNetworksPage) -> None:
    """Add an extension's page (A1111 name); the same page id registered twice replaces the first."""
    extra_pages[:] = [p for p in extra_pages if getattr(p, "name", None) != getattr(page, "name", None)]
    extra_pages.append(page)
    allowed_dirs.update(os.path.abspath(x) for x in page.allowed_directories_for_previews())


def clear_pages() -> None:
    extra_pages.clear()
    allowed_dirs.clear()


class ExtraNetworksPage:
    """Base class of an extension's page, with A1111's attributes and overridable methods."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.name = title.lower()
        self.id_page = self.name.replace(" ", "_")
        self.extra_networks_tabname = ""
        self.allow_prompt = True
        self.allow_negative_prompt = False
        self.metadata: dict[str, Any] = {}
        self.items: dict[str, dict[str, Any]] = {}
        self.lister = None

    def refresh(self) -> None:
        pass

    def list_items(self) -> Any:
        raise NotImplementedError

    def create_item(self, name: str, index: int | None = None) -> dict[str, Any] | None:
        raise NotImplementedError

    def allowed_directories_for_previews(self) -> list[str]:
        return []

    def read_user_metadata(self, item: dict[str, Any], use_cache: bool = True) -> None:
        from modules.ui_extra_networks import read_user_metadata

        filename = item.get("filename")
        if filename:
            item["user_metadata"] = read_user_metadata(Path(filename))

    def link_preview(self, filename: str) -> str:
        return "./file=" + html.escape(filename.replace("\\", "/"), quote=True)

    def search_terms_from_path(self, filename: str, possible_directories: list[str] | None = None) -> str:
        abspath = os.path.abspath(filename)
        for parentdir in possible_directories or self.allowed_directories_for_previews():
            parentdir = os.path.abspath(parentdir)
            if abspath.startswith(parentdir + os.sep):
                return abspath[len(parentdir):].replace("\\", "/")
        return ""

    def find_preview(self, path: str) -> str | None:
        """A data: URI of `<path>.png`/`.preview.png`... next to the file (ours is inlined, not a file= link)."""
        from modules.ui_extra_networks import find_preview

        return find_preview(Path(path + ".safetensors") if not os.path.splitext(path)[1] else Path(path))

    def find_embedded_preview(self, path: str, name: str, metadata: dict[str, Any]) -> str | None:
        return None

    def find_description(self, path: str) -> str | None:
        for file in (f"{path}.txt", f"{path}.description.txt"):
            try:
                with open(file, encoding="utf-8", errors="replace") as f:
                    return f.read()
            except OSError:
                continue
        return None

    def create_user_metadata_editor(self, ui: Any, tabname: str) -> Any:
        return None

    def get_sort_keys(self, path: str) -> dict[str, Any]:
        st = os.stat(path)
        return {"date_created": int(st.st_ctime), "date_modified": int(st.st_mtime), "name": Path(path).name.lower(),
                "path": Path(path).as_posix().lower()}


_JS_TERM = re.compile(r"""\s*(?:("(?:[^"\\]|\\.)*")|('(?:[^'\\]|\\.)*')|opts\.(\w+)|(-?\d+(?:\.\d+)?))\s*""")


def prompt_from_js(expr: Any, opts: Any = None) -> str:
    """Evaluate the JS expressions A1111 pages put in an item's "prompt": string literals, `opts.<key>` and
    numbers joined with `+` (`quote_js("<lora:x:") + " + opts.extra_networks_default_multiplier + " + quote_js(">")`).
    Anything else is taken as plain text."""
    if not isinstance(expr, str):
        return "" if expr is None else str(expr)
    parts, pos = [], 0
    while pos < len(expr):
        m = _JS_TERM.match(expr, pos)
        if m is None:
            return expr
        if m.group(1) is not None:
            parts.append(json.loads(m.group(1)))
        elif m.group(2) is not None:
            parts.append(m.group(2)[1:-1].replace("\\'", "'"))
        elif m.group(3) is not None:
            value = opts.get(m.group(3), "") if opts is not None else ""
            parts.append(str(value))
        else:
            parts.append(m.group(4))
        pos = m.end()
        if pos < len(expr):
            if expr[pos] != "+":
                return expr
            pos += 1
    return "".join(parts)


def _adapter_base() -> type:
    from modules.ui_extra_networks import Page

    return Page


def extension_pages(runtime: Any) -> list[Any]:
    """The registered pages as pages of modules.ui_extra_networks (built when the UI builds its tabs)."""
    base = _adapter_base()
    from modules.ui_extra_networks import Card

    class ExtensionPage(base):  # type: ignore[misc, valid-type]
        """One extension page shown with our cards UI."""

        def __init__(self, runtime: Any, page: ExtraNetworksPage) -> None:
            super().__init__(runtime)
            self.page = page
            self.title = page.title
            self.page_id = page.id_page
            self.allows_negative = bool(page.allow_negative_prompt)

        def refresh(self) -> None:
            self.page.refresh()

        def items(self) -> list[Any]:
            cards = []
            for item in self.page.list_items() or []:
                filename = item.get("filename") or item.get("local_preview") or item.get("name", "")
                preview = item.get("preview")
                if isinstance(preview, str) and not preview.startswith("data:"):
                    preview = None  # A1111's file= links are not served here; previews are data: URIs
                search = item.get("search_terms") or []
                cards.append(Card(name=str(item.get("name", "")), filename=Path(str(filename)),
                                  prompt=prompt_from_js(item.get("prompt"), self.runtime.opts),
                                  negative=prompt_from_js(item.get("negative_prompt"), self.runtime.opts),
                                  description=str(item.get("description") or ""),
                                  search_terms=[str(s) for s in search] if isinstance(search, list) else [str(search)],
                                  preview=preview))
            return cards

    return [ExtensionPage(runtime, p) for p in list(extra_pages)]
