"""Composition only: build the Runtime, the FastAPI app with the Gradio UI mounted on it, and serve."""

from __future__ import annotations

import logging
import sys
import threading
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modules import cmd_args
from modules.initialize import configure_logging, create_runtime
from modules.runtime import Runtime

log = logging.getLogger("webui")


def parse_auth(value: str | None, path: str | None = None) -> list[tuple[str, str]]:
    """`user:pass[,user2:pass2]` and/or a file of such entries (one per line or comma-separated)."""
    entries: list[str] = []
    if value:
        entries += value.split(",")
    if path:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            entries += line.split(",")
    creds = []
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        if ":" not in entry:
            raise cmd_args.ArgumentError(f"credentials must be user:password, got {entry!r}")
        user, password = entry.split(":", 1)
        creds.append((user, password))
    return creds


def create_app(runtime: Runtime) -> Any:
    """The one FastAPI app: the runtime on app.state, the UI at / unless --nowebui."""
    from fastapi import FastAPI

    api = bool(runtime.cmd_opts.api or runtime.cmd_opts.nowebui)
    app = FastAPI(title="Stable Diffusion web UI", docs_url="/docs" if api else None, redoc_url=None,
                  openapi_url="/openapi.json" if api else None)
    app.state.runtime = runtime
    opts = runtime.cmd_opts
    if opts.cors_allow_origins or opts.cors_allow_origins_regex:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=(opts.cors_allow_origins or "").split(",") if
                           opts.cors_allow_origins else [], allow_origin_regex=opts.cors_allow_origins_regex,
                           allow_methods=["*"], allow_credentials=True, allow_headers=["*"])
    add_restart_route(app, runtime)
    if api:
        from modules.api import mount

        mount(app, runtime)  # before Gradio is mounted at /, so /sdapi/v1 is matched first
    if opts.nowebui:
        from modules import script_callbacks, ui_scripts

        ui_scripts.layout_without_page(runtime.scripts_txt2img)
        ui_scripts.layout_without_page(runtime.scripts_img2img, is_img2img=True)
        script_callbacks.app_started_callback(None, app)
        return app

    import gradio as gr

    from modules.ui import CSS, create_ui, gradio_theme, head_html

    demo = create_ui(runtime)
    demo.queue(default_concurrency_limit=1)
    auth = parse_auth(opts.gradio_auth, opts.gradio_auth_path) or None
    allowed = [str(runtime.paths.outputs_dir), *opts.gradio_allowed_path]
    app = gr.mount_gradio_app(app, demo, path=opts.subpath or "/", auth=auth, allowed_paths=allowed, css=CSS,
                              head=head_html(runtime), footer_links=["gradio"], ssr_mode=False,
                              theme=gradio_theme(runtime))
    from modules import script_callbacks

    script_callbacks.app_started_callback(demo, app)
    return app


def add_restart_route(app: Any, runtime: Runtime) -> None:
    """POST /internal/restart (JSON body) for a local, unauthenticated server: what "Apply and restart UI" does.

    Not there when the UI has a password or listens on the network (the extension-access rule). Requiring a JSON
    body makes a browser send a CORS preflight first, so another website cannot trigger it.
    """
    opts = runtime.cmd_opts
    if opts.gradio_auth or opts.gradio_auth_path or getattr(opts, "disable_extension_access", False):
        return
    from fastapi.responses import JSONResponse

    from modules import restart

    async def restart_route(request: Any) -> JSONResponse:  # a plain Starlette route: no FastAPI parameter parsing
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send a JSON body"}, status_code=415)
        try:
            restart.request_restart(runtime.jobs)
        except restart.RestartError as e:
            return JSONResponse({"error": str(e)}, status_code=409)
        return JSONResponse({"restarting": True})

    app.router.add_route("/internal/restart", restart_route, methods=["POST"], include_in_schema=False)


def server_host(cmd_opts: Any) -> str:
    if cmd_opts.server_name:
        return cmd_opts.server_name
    return "0.0.0.0" if cmd_opts.listen else "127.0.0.1"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from modules.script_loading import extension_preload

    parser = cmd_args.build_parser()
    preload_errors = extension_preload(parser, cmd_args.argv_with_env(argv))  # extensions may add flags
    try:
        cmd_opts = cmd_args.parse_args(argv, parser=parser)
    except cmd_args.ArgumentError as e:
        print(e.message, file=sys.stderr)
        return 2
    configure_logging(cmd_opts.loglevel)
    runtime = create_runtime(cmd_opts=cmd_opts)
    runtime.warnings.extend(preload_errors)
    app = create_app(runtime)
    # Load the model as the queue's first job, so the page is up at once and shows the progress, and a Generate
    # pressed meanwhile waits for the load behind it (as A1111 waits) instead of finding no model.
    runtime.start_initial_load()

    import uvicorn

    host, port = server_host(cmd_opts), cmd_opts.port
    url = f"http{'s' if cmd_opts.tls_certfile else ''}://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/"
    print(f"Running on local URL:  {url}", flush=True)
    if cmd_opts.autolaunch:
        threading.Timer(1.5, webbrowser.open, args=(url,)).start()
    from modules import restart

    server = uvicorn.Server(uvicorn.Config(
        app, host=host, port=port, timeout_keep_alive=cmd_opts.timeout_keep_alive, ssl_keyfile=cmd_opts.tls_keyfile,
        ssl_certfile=cmd_opts.tls_certfile, log_level="warning", timeout_graceful_shutdown=5))
    restart.set_stopper(lambda: setattr(server, "should_exit", True))
    server.run()
    if restart.restart_requested():
        print("Restarting the web UI", flush=True)
        return restart.RESTART_EXIT_CODE
    return 0


if __name__ == "__main__":
    sys.exit(main())
