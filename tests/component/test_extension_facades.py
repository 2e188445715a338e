"""Facades with behaviour worth a test of their own: queue_lock holds the job queue, registered pages get a tab."""

from __future__ import annotations

import threading

import gradio as gr

from modules import call_queue, ui_extra_networks, ui_extra_networks_pages


def test_queue_lock_holds_the_job_queue(make_runtime) -> None:
    rt = make_runtime()
    order: list[str] = []
    with call_queue.queue_lock:
        job = rt.jobs.submit("after-lock", lambda state: order.append("job"))
        # The lock occupies the queue's worker: our job waits behind it.
        assert rt.jobs.current.name == "extension (queue_lock)" and job.status == "queued"
        order.append("locked body")
    rt.jobs.wait(job, timeout=30)
    assert order == ["locked body", "job"]
    ran_in = call_queue.wrap_queued_call(lambda: threading.current_thread().name)()
    assert ran_in == "job-worker"


class _Page(ui_extra_networks_pages.ExtraNetworksPage):
    def __init__(self) -> None:
        super().__init__("Facade Page")

    def list_items(self):
        yield {"name": "one", "filename": "/nowhere/one.bin", "prompt": ui_extra_networks.quote_js("<x:one>")}


def test_registered_page_is_a_tab_next_to_ours(make_runtime) -> None:
    rt = make_runtime()
    ui_extra_networks.register_page(_Page())
    try:
        with gr.Blocks():
            prompt, negative = gr.Textbox(), gr.Textbox()
            out = ui_extra_networks.create_extra_networks_ui(rt, "txt2img", {"prompt": prompt,
                                                                             "negative_prompt": negative})
        assert "facade_page" in out and "lora" in out
        assert ui_extra_networks_pages.prompt_from_js('"<a:" + opts.extra_networks_default_multiplier + ">"',
                                                      rt.opts) == "<a:1.0>"
    finally:
        ui_extra_networks_pages.clear_pages()
