"""`GET /sdapi/v1/extensions` with each extension's load status (fully / partly / not at all, and why)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel


class ExtensionStatusItem(BaseModel):
    """A1111's fields, then ours: how the extension's scripts loaded."""

    name: str
    remote: str
    branch: str
    commit_hash: str
    version: str
    commit_date: int | str
    enabled: bool
    is_builtin: bool = False
    load_status: str = ""
    """"fully", "partly", "not at all", "disabled" (or "not loaded" before start-up finished)."""
    scripts_loaded: list[str] = []
    scripts_failed: dict[str, str] = {}
    """file name -> one line saying why it failed."""
    errors: list[str] = []


def extension_items(runtime: Any, include_builtin: bool = False) -> list[dict[str, Any]]:
    """Every user extension folder, git or not, and built-ins only when asked (A1111 lists only extensions with
    a git remote; a folder copied in by hand has none, and its load status matters just as much)."""
    out = []
    for ext in getattr(runtime, "extensions", None) or []:
        if ext.is_builtin and not (include_builtin or ext.remote):
            continue
        out.append({
            "name": ext.name,
            "remote": ext.remote or "",
            "branch": ext.branch or "",
            "commit_hash": ext.commit_hash or "",
            "version": (ext.commit_hash or "")[:8],
            "commit_date": ext.commit_date or 0,
            "enabled": bool(ext.enabled),
            "is_builtin": bool(ext.is_builtin),
            "load_status": ext.load_status,
            "scripts_loaded": list(ext.scripts_loaded),
            "scripts_failed": dict(ext.scripts_failed),
            "errors": list(ext.errors),
        })
    return out


def create_router() -> APIRouter:
    router = APIRouter()

    @router.get("/extensions", response_model=list[ExtensionStatusItem])
    def extensions(request: Request, include_builtin: bool = False) -> Any:
        return extension_items(request.app.state.runtime, include_builtin)

    return router
