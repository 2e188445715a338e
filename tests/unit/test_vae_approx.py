"""Live-preview decoders: the linear "Approx cheap" map and TAESD through a tiny local AutoencoderTiny."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from modules import sd_vae_approx
from modules.errors import ModelLoadError, ValidationError

# The published SD 1.x factors (Keturn, HF forum thread 23204), re-typed here so a typo in the module shows up.
KETURN_SD14 = np.array([[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264], [-0.184, -0.271, -0.473]])


@pytest.mark.parametrize("channel", range(4))
def test_sd_basis_latent_maps_to_coefficient_row(channel):
    latent = torch.zeros(4, 5, 7)
    latent[channel] = 1.0
    image = sd_vae_approx.cheap_approximation(latent, is_sdxl=False)
    assert image.mode == "RGB" and image.size == (7, 5)
    pixels = np.asarray(image).astype(int)
    expected = (KETURN_SD14[channel] + 1) * 127.5
    assert np.all(np.abs(pixels - expected) <= 1)


def test_linear_in_latent_and_sdxl_differs():
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 6, 6, generator=gen) * 0.3, torch.randn(4, 6, 6, generator=gen) * 0.3
    for is_sdxl in (False, True):
        lhs = sd_vae_approx.latent_to_rgb(2 * a - b, is_sdxl)
        rhs = 2 * sd_vae_approx.latent_to_rgb(a, is_sdxl) - sd_vae_approx.latent_to_rgb(b, is_sdxl)
        torch.testing.assert_close(lhs, rhs)
    assert not torch.allclose(sd_vae_approx.latent_to_rgb(a, False), sd_vae_approx.latent_to_rgb(a, True))


def test_clamps_and_handles_nan_and_batch_of_one():
    latent = torch.zeros(1, 4, 2, 2)
    latent[0, 0, 0, 0] = 100.0  # far above range
    latent[0, 0, 0, 1] = -100.0  # far below
    latent[0, :, 1, 0] = float("nan")
    pixels = np.asarray(sd_vae_approx.cheap_approximation(latent, is_sdxl=True))
    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert pixels[0, 1].tolist() == [0, 0, 0]
    assert all(127 <= v <= 128 for v in pixels[1, 0])


@pytest.mark.parametrize("bad", [torch.zeros(3, 8, 8), torch.zeros(2, 4, 8, 8), torch.zeros(8, 8), "latent"])
def test_bad_latent_is_a_clear_error(bad):
    with pytest.raises(ValidationError, match="latent"):
        sd_vae_approx.cheap_approximation(bad, is_sdxl=False)


# --- TAESD ---------------------------------------------------------------------------------------------------------


def _tiny_autoencoder(**config):
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    return AutoencoderTiny(**config).eval()


def test_find_taesd_none_when_absent(tmp_path):
    (tmp_path / "VAE-approx" / "taesd").mkdir(parents=True)  # empty folder: no config, no weights
    assert sd_vae_approx.find_taesd(tmp_path, is_sdxl=False) is None
    assert sd_vae_approx.find_taesd(tmp_path / "missing", is_sdxl=True) is None


def test_diffusers_folder_is_found_loaded_and_decodes(tmp_path):
    tiny = _tiny_autoencoder(
        encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8), num_encoder_blocks=(1, 1),
        num_decoder_blocks=(1, 1),
    )  # fmt: skip
    tiny.save_pretrained(tmp_path / "VAE-approx" / "taesdxl", safe_serialization=True)

    assert sd_vae_approx.find_taesd(tmp_path, is_sdxl=False) is None
    found = sd_vae_approx.find_taesd(tmp_path, is_sdxl=True)
    assert found == tmp_path / "VAE-approx" / "taesdxl"

    model = sd_vae_approx.load_taesd(found)
    latent = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(1))
    image = sd_vae_approx.taesd_decode(model, latent)
    assert isinstance(image, Image.Image) and image.size == (10, 12)  # two decoder stages: one 2x upsample
    with torch.no_grad():
        expected = tiny.decode(latent.unsqueeze(0)).sample[0]
    np.testing.assert_array_equal(np.asarray(image), np.asarray(sd_vae_approx.to_image(expected)))


def test_single_decoder_file_in_original_layout_loads(tmp_path):
    from safetensors.torch import save_file

    reference = _tiny_autoencoder()
    # madebyollin's decoder file: an nn.Sequential starting with a clamp, so layer indices are one higher.
    original = {}
    for key, tensor in reference.decoder.state_dict().items():
        _, index, rest = key.split(".", 2)
        original[f"{int(index) + 1}.{rest}"] = tensor.contiguous()
    folder = tmp_path / "VAE-approx"
    folder.mkdir()
    save_file(original, str(folder / "taesd_decoder.safetensors"))

    found = sd_vae_approx.find_taesd(tmp_path, is_sdxl=False)
    assert found == folder / "taesd_decoder.safetensors"
    model = sd_vae_approx.load_taesd(found)
    latent = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model.decode(latent).sample, reference.decode(latent).sample)
    assert sd_vae_approx.taesd_decode(model, latent).size == (32, 32)


def test_broken_taesd_file_is_a_model_load_error(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "taesd_decoder.safetensors"
    save_file({"encoder.weight": torch.zeros(1)}, str(path))
    with pytest.raises(ModelLoadError, match="not a usable TAESD model"):
        sd_vae_approx.load_taesd(path)
