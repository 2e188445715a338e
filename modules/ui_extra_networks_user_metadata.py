"""L4 adapter (Gradio): A1111's `UserMetadataEditor` base for extensions' extra-network pages, over our
`<model>.json` metadata (the same file our own card editor reads and writes)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from modules.ui_extra_networks import read_user_metadata, write_user_metadata


class UserMetadataEditor:
    """What A1111's editor offers subclasses: the item's user metadata read and written as `<model>.json`."""

    def __init__(self, ui: Any, tabname: str, page: Any) -> None:
        self.ui, self.tabname, self.page = ui, tabname, page
        self.id_part = f"{tabname}_{getattr(page, 'extra_networks_tabname', getattr(page, 'id_page', 'page'))}_edit_user_metadata"

    def get_page_item(self, name: str) -> dict[str, Any]:
        items = getattr(self.page, "items", None) or {}
        return items.get(name, {}) if isinstance(items, dict) else {}

    def _filename(self, name: str) -> Path | None:
        filename = self.get_page_item(name).get("filename")
        return Path(filename) if filename else None

    def get_user_metadata(self, name: str) -> dict[str, Any]:
        """The item's `<model>.json` (and `<model>.txt` description), {} when it has no file."""
        path = self._filename(name)
        return read_user_metadata(path) if path is not None else {}

    def write_user_metadata(self, name: str, metadata: dict[str, Any]) -> None:
        path = self._filename(name)
        if path is None:
            raise ValueError(f"no file for the extra network {name!r}")
        write_user_metadata(path, metadata)

    def get_metadata_table(self, name: str) -> list[tuple[str, str]]:
        path = self._filename(name)
        return [("Filename:", str(path))] if path is not None else []

    def create_extra_default_items_in_left_column(self) -> None:
        """Subclasses add controls here (A1111's hook); the base adds none."""

    def html_escape(self, text: str) -> str:
        return html.escape(str(text))
