"""The Train tab in a real browser: create an embedding, train it a few steps, see loss and the result."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.tiny_models import write_tiny_checkpoint
from tests.live_server import LiveServer
from tests.training.conftest import write_toy_dataset

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("train")
    write_tiny_checkpoint("sd1", data / "models" / "Stable-diffusion", "tiny", seed=7)
    with LiveServer(data, "--no-half") as url:
        yield url, data


def _number(page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} input[type=number]").first
    box.fill(value)
    box.press("Tab")


def test_create_and_train_embedding(page, server, tmp_path: Path) -> None:
    url, data = server
    dataset = write_toy_dataset(tmp_path / "ds", count=1)
    page.goto(url)
    page.get_by_role("tab", name="Train", exact=True).first.click()
    page.locator("#train_new_embedding_name input, #train_new_embedding_name textarea").first.fill("browseremb")
    page.locator("#train_create_embedding").click()
    page.locator("#ti_output").filter(has_text="Created").wait_for(timeout=60000)
    assert (data / "embeddings" / "browseremb.pt").is_file()
    # Bad input: a dataset folder that does not exist, reported in the outcome box.
    page.locator("#train_tabs").get_by_role("tab", name="Train", exact=True).click()
    page.locator("#train_embedding input").first.fill("browseremb")
    page.locator("#train_embedding input").first.press("Enter")
    page.locator("#train_dataset_directory textarea, #train_dataset_directory input").first.fill(str(tmp_path / "x"))
    page.locator("#train_train_embedding").click()
    page.locator("#ti_outcome").filter(has_text="does not exist").wait_for(timeout=60000)
    # A real run of three steps at 64x64.
    page.locator("#train_dataset_directory textarea, #train_dataset_directory input").first.fill(str(dataset))
    _number(page, "train_training_width", "64")
    _number(page, "train_training_height", "64")
    _number(page, "train_steps", "3")
    _number(page, "train_create_image_every", "0")
    _number(page, "train_save_embedding_every", "0")
    page.locator("#train_train_embedding").click()
    page.locator("#ti_outcome").filter(has_text="Training finished at 3 steps").wait_for(timeout=180000)
    assert "browseremb.pt" in page.locator("#ti_outcome").inner_text()
    assert "step 3/3, loss:" in page.locator("#ti_output").inner_text()
    assert page.locator("#train_loss_plot").count() == 1
    # Train LoRA: one step at 64x64 writes models/Lora/<name>.safetensors.
    page.locator("#train_tabs").get_by_role("tab", name="Train LoRA").click()
    page.locator("#train_lora_name input, #train_lora_name textarea").first.fill("browserlora")
    page.locator("#train_lora_dataset_directory input, #train_lora_dataset_directory textarea").first.fill(
        str(dataset))
    _number(page, "train_lora_resolution", "64")
    _number(page, "train_lora_steps", "1")
    _number(page, "train_lora_create_image_every", "0")
    _number(page, "train_lora_save_every", "0")
    page.locator("#train_train_lora").click()
    page.locator("#ti_outcome").filter(has_text="LoRA saved to").wait_for(timeout=180000)
    assert (data / "models" / "Lora" / "browserlora.safetensors").is_file()
    assert not page.js_errors
