"""The Extensions tab (Installed, Available, Install from URL, Backup/Restore) and extensions' own tabs."""

from __future__ import annotations

import html
import os
import time
from typing import Any

import gradio as gr

from modules import extensions
from modules.extensions import Extension, ExtensionError
from modules.runtime import Runtime


def _installed(runtime: Runtime) -> list[Extension]:
    return list(getattr(runtime, "extensions", []) or [])


def refresh(runtime: Runtime) -> list[Extension]:
    """Re-read the folders (after an install) keeping the enabled flags from settings."""
    found = extensions.list_extensions(runtime.paths.extensions_builtin_dir, runtime.paths.extensions_dir,
                                       runtime.opts, runtime.cmd_opts)
    old = {e.name: e for e in _installed(runtime)}
    for ext in found:
        ext.read_info_from_repo()
        if ext.name in old:
            ext.status, ext.can_update = old[ext.name].status, old[ext.name].can_update
            ext.errors = list(dict.fromkeys(old[ext.name].errors + ext.errors))
            # How its scripts loaded at start-up stays true until the next start.
            ext.scripts_loaded, ext.scripts_failed = old[ext.name].scripts_loaded, old[ext.name].scripts_failed
            ext.load_attempted = old[ext.name].load_attempted
    runtime.extensions = found
    return found


def installed_table(runtime: Runtime) -> str:
    rows = []
    for e in _installed(runtime):
        version = e.commit_hash[:8] if e.commit_hash else ""
        date = time.strftime("%Y-%m-%d %H:%M", time.localtime(e.commit_date)) if e.commit_date else ""
        errs = "".join(f'<div class="error">{html.escape(x)}</div>' for x in e.errors)
        rows.append(
            f'<tr data-extension="{html.escape(e.name)}"><td>{"✅" if e.enabled else "⬜"} {html.escape(e.name)}'
            f'{errs}</td><td>{"built-in" if e.is_builtin else html.escape(e.remote or "")}</td>'
            f"<td>{html.escape(e.branch or '')}</td><td>{version}</td><td>{date}</td>"
            f"<td>{html.escape(e.status)}</td>"
            f'<td class="extension-load-status" data-load-status="{html.escape(e.load_status)}">'
            f"{html.escape(e.load_summary())}</td></tr>")
    head = ("<tr><th>Extension</th><th>URL</th><th>Branch</th><th>Version</th><th>Date</th><th>Update</th>"
            "<th>Loaded</th></tr>")
    return f'<table id="extensions_installed_table" class="extensions-table">{head}{"".join(rows)}</table>'


def apply_and_restart(runtime: Runtime, enabled: list[str], disable_all: str, update: list[str] | None = None) -> str:
    """Save the enabled set, then restart the server so it loads it; a refused restart says why (settings kept)."""
    from modules import restart

    message = apply_changes(runtime, enabled, disable_all, update)
    try:
        restart.request_restart(runtime.jobs)
    except restart.RestartError as e:
        return f"{message} Not restarted: {e}"
    return message.replace(RESTART_HINT, RESTARTING)


RESTART_HINT = "Saved. Restart the webui to load the changed set of extensions."
RESTARTING = "Saved. Restarting: the page reloads when the server is back."
# Runs in the page after Apply: once the server went away and answers again, reload to get the new page.
RELOAD_JS = """() => {
    const box = document.querySelector('#extensions_result');
    if (!box || !box.textContent.includes('Restarting')) return;
    let wentDown = false, tries = 0;
    const poll = () => {
        if (++tries > 600) return;
        fetch(window.location.href, {cache: 'no-store'}).then(
            r => { if (r.ok && wentDown) window.location.reload(); else setTimeout(poll, 500); },
            () => { wentDown = true; setTimeout(poll, 500); });
    };
    setTimeout(poll, 500);
}"""


def apply_changes(runtime: Runtime, enabled: list[str], disable_all: str, update: list[str] | None = None) -> str:
    """Save `disabled_extensions`/`disable_all_extensions` and update the ticked ones; takes effect on restart."""
    extensions.check_access(runtime.cmd_opts)
    names = [e.name for e in _installed(runtime)]
    runtime.opts.set("disabled_extensions", [n for n in names if n not in set(enabled)])
    runtime.opts.set("disable_all_extensions", disable_all if disable_all in ("none", "extra", "all") else "none")
    runtime.save_settings()
    messages = []
    by_name = {e.name: e for e in _installed(runtime)}
    for name in update or []:
        ext = by_name.get(name)
        if ext is None or ext.is_builtin:
            continue
        try:
            ext.update()
            messages.append(f"Updated {name}.")
        except ExtensionError as e:
            ext.status = "update failed"
            messages.append(str(e))
    for ext in _installed(runtime):
        ext.enabled = ext.name in enabled
    messages.append(RESTART_HINT)
    return " ".join(messages)


def check_for_updates(runtime: Runtime) -> list[str]:
    """Fetch every enabled non-built-in extension with a remote; returns the names with new commits."""
    extensions.check_access(runtime.cmd_opts)
    names = []
    for ext in _installed(runtime):
        if ext.enabled and not ext.is_builtin:
            ext.check_updates()
            if ext.can_update:
                names.append(ext.name)
    return names


def install(runtime: Runtime, url: str, branch: str = "", dirname: str = "") -> str:
    path = extensions.install_from_url(url, runtime.paths.extensions_dir, branch=branch, dirname=dirname,
                                       cmd_opts=runtime.cmd_opts, installed=_installed(runtime))
    refresh(runtime)
    return f"Installed into {path}. Use the Installed tab to restart."


def available_table(runtime: Runtime, url: str) -> str:
    try:
        index = extensions.fetch_index(url)
    except ExtensionError as e:
        return f'<div class="error">{html.escape(str(e))}</div>'
    have_urls = {extensions.normalize_url(e.remote) for e in _installed(runtime) if e.remote}
    have_names = {e.name.lower() for e in _installed(runtime)}
    rows = []
    for item in index.get("extensions", []):
        if not isinstance(item, dict):
            continue
        url_ = str(item.get("url", ""))
        name = str(item.get("name", url_))
        installed = extensions.normalize_url(url_) in have_urls or url_.rstrip("/").split("/")[-1].lower().removesuffix(
            ".git") in have_names
        tags = ", ".join(str(t) for t in item.get("tags", []))
        rows.append(f"<tr><td><a href=\"{html.escape(url_)}\" target=\"_blank\">{html.escape(name)}</a><br>"
                    f"<small>{html.escape(tags)}</small></td><td>{html.escape(str(item.get('description', '')))}</td>"
                    f"<td>{'Installed' if installed else html.escape(url_)}</td></tr>")
    return f'<table id="extensions_available_table">{"".join(rows)}</table>'


def _states_dir(runtime: Runtime) -> Any:
    return runtime.paths.data_dir / "config_states"


def create_extensions_tab(runtime: Runtime) -> None:
    def names_enabled() -> list[str]:
        return [e.name for e in _installed(runtime) if e.enabled]

    def names_all() -> list[str]:
        return [e.name for e in _installed(runtime)]

    with gr.Tab("Extensions", id="extensions", elem_id="tab_extensions"):
        access_note = ""
        if getattr(runtime.cmd_opts, "disable_extension_access", False):
            access_note = ("Installing and updating extensions is disabled because the server listens on the network; "
                           "start with --enable-insecure-extension-access to allow it.")
        mode = extensions.disabled_mode(runtime.opts, runtime.cmd_opts)
        if mode != "none":
            access_note += f" Extensions are disabled ({mode}); only " + (
                "built-in ones are loaded." if mode == "extra" else "none are loaded.")
        gr.HTML(f'<div class="sd-status sd-status-warning">{html.escape(access_note)}</div>' if access_note else "",
                elem_id="extensions_access_note")
        with gr.Tabs(elem_id="tabs_extensions"):
            with gr.Tab("Installed", id="extensions_installed"):
                with gr.Row():
                    apply = gr.Button("Apply and restart UI", variant="primary", elem_id="extensions_apply")
                    check = gr.Button("Check for updates", elem_id="extensions_check")
                    refresh_btn = gr.Button("Refresh", elem_id="extensions_refresh")
                disable_all = gr.Radio(["none", "extra", "all"], value=runtime.opts.get("disable_all_extensions", "none"),
                                       label="Disable all extensions", elem_id="extensions_disable_all")
                enabled = gr.CheckboxGroup(names_all(), value=names_enabled(), label="Enabled extensions",
                                           elem_id="extensions_enabled")
                update = gr.CheckboxGroup([], value=[], label="Update", elem_id="extensions_update")
                table = gr.HTML(installed_table(runtime), elem_id="extensions_installed_html")
                result = gr.HTML(elem_id="extensions_result")
            with gr.Tab("Available", id="extensions_available"):
                with gr.Row():
                    index_url = gr.Textbox(os.environ.get("WEBUI_EXTENSIONS_INDEX", extensions.DEFAULT_INDEX_URL),
                                           label="Extension index URL", elem_id="extensions_index_url")
                    load = gr.Button("Load from:", elem_id="extensions_load_available")
                available = gr.HTML(elem_id="extensions_available_html")
            with gr.Tab("Install from URL", id="extensions_install_url"):
                url = gr.Textbox(label="URL for extension's git repository", elem_id="extensions_install_url")
                branch = gr.Textbox(label="Specific branch name", placeholder="Leave empty for default main branch",
                                    elem_id="extensions_install_branch")
                dirname = gr.Textbox(label="Local directory name", placeholder="Leave empty for auto",
                                     elem_id="extensions_install_dirname")
                install_btn = gr.Button("Install", variant="primary", elem_id="extensions_install_button")
                install_result = gr.HTML(elem_id="extensions_install_result")
            with gr.Tab("Backup/Restore", id="extensions_backup"):
                states = gr.Dropdown(["Current"], value="Current", label="Saved Configs",
                                     elem_id="extensions_config_states")
                restore = gr.Button("Restore Selected Config", elem_id="extensions_restore")
                config_name = gr.Textbox(label="Config Name", elem_id="extensions_config_name")
                save_state = gr.Button("Save Current Config", elem_id="extensions_save_config")
                state_result = gr.HTML(elem_id="extensions_state_result")

    def guarded(fn: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            try:
                return fn(*args)
            except ExtensionError as e:
                return f'<div class="error">{html.escape(str(e))}</div>'
        return wrapper

    def on_apply(en: list[str], mode_: str, upd: list[str]) -> tuple:
        msg = guarded(lambda: html.escape(apply_and_restart(runtime, en, mode_, upd)))()
        return msg, installed_table(runtime)

    def on_check() -> tuple:
        try:
            names = check_for_updates(runtime)
        except ExtensionError as e:
            return f'<div class="error">{html.escape(str(e))}</div>', installed_table(runtime), gr.update()
        return (f"{len(names)} extension(s) have updates.", installed_table(runtime),
                gr.update(choices=names, value=names))

    def on_refresh() -> tuple:
        refresh(runtime)
        return installed_table(runtime), gr.update(choices=names_all(), value=names_enabled())

    def on_install(u: str, b: str, d: str) -> tuple:
        msg = guarded(lambda: html.escape(install(runtime, u, b, d)))()
        return msg, installed_table(runtime), gr.update(choices=names_all(), value=names_enabled())

    def state_names() -> list[str]:
        return ["Current", *[p.name for p in extensions.list_config_states(_states_dir(runtime))]]

    def on_save(name: str) -> tuple:
        path = extensions.save_config_state(_states_dir(runtime), _installed(runtime), name)
        return f"Saved {html.escape(path.name)}.", gr.update(choices=state_names(), value=path.name)

    def on_restore(name: str) -> tuple:
        def do() -> str:
            extensions.check_access(runtime.cmd_opts)
            if not name or name == "Current":
                return "Pick a saved config to restore."
            path = _states_dir(runtime) / os.path.basename(name)
            disabled = extensions.restore_enabled_set(path, _installed(runtime))
            enabled_now = [e.name for e in _installed(runtime) if e.name not in disabled]
            return html.escape(apply_changes(runtime, enabled_now, "none"))
        return guarded(do)(), installed_table(runtime), gr.update(value=names_enabled())

    private = {"api_visibility": "private"}
    apply.click(on_apply, inputs=[enabled, disable_all, update], outputs=[result, table], **private).then(
        None, js=RELOAD_JS, **private)
    check.click(on_check, outputs=[result, table, update], **private)
    refresh_btn.click(on_refresh, outputs=[table, enabled], **private)
    install_btn.click(on_install, inputs=[url, branch, dirname], outputs=[install_result, table, enabled], **private)
    load.click(lambda u: available_table(runtime, u), inputs=[index_url], outputs=[available], **private)
    save_state.click(on_save, inputs=[config_name], outputs=[state_result, states], **private)
    restore.click(on_restore, inputs=[states], outputs=[state_result, table, enabled], **private)
    states.focus(lambda: gr.update(choices=state_names()), outputs=[states], **private)


def create_extension_tabs(tabs: list[Any]) -> None:
    """Top-level tabs returned by on_ui_tabs callbacks: (gr.Blocks, title, elem_id)."""
    for item in tabs:
        try:
            blocks, title, elem_id = item[0], item[1], item[2]
        except (TypeError, IndexError):
            continue
        with gr.Tab(str(title), id=str(elem_id), elem_id=f"tab_{elem_id}"):
            blocks.render()
