"""Image metadata: infotext written where A1111 writes it, read back from our, NovelAI and ComfyUI files."""

from __future__ import annotations

import json
import os
import struct

import pytest
from PIL import Image, PngImagePlugin, features

from modules.image_metadata import (
    ImageFormatError,
    ImageWriteError,
    InfotextTooLargeError,
    build_user_comment_exif,
    decode_user_comment,
    read_info_from_image,
    write_image_with_infotext,
)
from modules.infotext import create_infotext

INFOTEXT = create_infotext(
    "a cat, (blue eyes:1.2)\nsecond line",
    "ugly, blurry",
    {
        "Steps": 25,
        "Sampler": "DPM++ 2M",
        "Schedule type": "Karras",
        "CFG scale": 6.5,
        "Seed": 1234,
        "Size": "64x48",
        "Model hash": "6ce0161689",
        "Model": "v1-5-pruned-emaonly",
        "Lora hashes": "detail: 0123456789ab",
        "Version": "v1.10.1",
    },
)
UNICODE_INFOTEXT = "猫, ünïcødé ✓\nNegative prompt: 悪い\nSteps: 5, Sampler: Euler, CFG scale: 7, Seed: 1"


def _image(mode: str = "RGB") -> Image.Image:
    img = Image.new(mode, (64, 48))
    img.putpixel((3, 4), (200, 100, 50, 255)[: len(mode)] if mode != "L" else 128)
    return img


def _user_comment_bytes(path) -> bytes:
    with Image.open(path) as img:
        return img.getexif().get_ifd(0x8769)[0x9286]


def _leftovers(directory) -> list[str]:
    return [n for n in os.listdir(directory) if n.endswith(".tmp")]


def test_png_parameters_chunk_round_trip(tmp_path):
    path = tmp_path / "a.png"
    write_image_with_infotext(_image("RGBA"), path, INFOTEXT, "png", extra_pnginfo={"extras": "Upscale: 2"})
    data = path.read_bytes()
    assert b"tEXtparameters\0" in data  # Latin-1 text goes into tEXt, like Pillow/A1111
    with Image.open(path) as img:
        assert img.mode == "RGBA"
        geninfo, items = read_info_from_image(img)
    assert geninfo == INFOTEXT
    assert items == {"extras": "Upscale: 2"}
    assert _leftovers(tmp_path) == []


def test_png_non_latin1_uses_itxt(tmp_path):
    path = tmp_path / "u.png"
    write_image_with_infotext(_image(), path, UNICODE_INFOTEXT, "png")
    assert b"iTXtparameters\0" in path.read_bytes()
    with Image.open(path) as img:
        assert read_info_from_image(img)[0] == UNICODE_INFOTEXT


@pytest.mark.parametrize("fmt", ["jpg", "jpeg", "webp"])
def test_exif_user_comment_is_unicode_prefix_plus_utf16be(tmp_path, fmt):
    path = tmp_path / f"a.{fmt}"
    write_image_with_infotext(_image("RGBA"), path, UNICODE_INFOTEXT, fmt, quality=90)
    assert _user_comment_bytes(path) == b"UNICODE\0" + UNICODE_INFOTEXT.encode("utf-16-be")
    with Image.open(path) as img:
        geninfo, items = read_info_from_image(img)
        assert img.mode == ("RGB" if fmt != "webp" else "RGBA")
    assert geninfo == UNICODE_INFOTEXT
    assert "exif" not in items


def test_exif_block_layout_and_tag_type():
    exif = build_user_comment_exif("hi")
    assert exif[:6] == b"Exif\0\0"
    tiff = exif[6:]
    assert tiff[:4] == b"MM\0\x2a"
    exif_ifd = struct.unpack(">I", tiff[18:22])[0]
    tag, typ, count, offset = struct.unpack(">HHII", tiff[exif_ifd + 2 : exif_ifd + 14])
    assert (tag, typ) == (0x9286, 7)  # UserComment, UNDEFINED as the EXIF spec requires
    assert tiff[offset : offset + count] == b"UNICODE\0\0h\0i"


@pytest.mark.skipif(not features.check("avif"), reason="Pillow built without AVIF")
def test_avif_round_trip(tmp_path):
    path = tmp_path / "a.avif"
    write_image_with_infotext(_image(), path, INFOTEXT, "avif")
    assert _user_comment_bytes(path) == b"UNICODE\0" + INFOTEXT.encode("utf-16-be")
    with Image.open(path) as img:
        assert read_info_from_image(img)[0] == INFOTEXT


def test_gif_comment_round_trip(tmp_path):
    path = tmp_path / "a.gif"
    write_image_with_infotext(_image(), path, INFOTEXT, "gif")
    with Image.open(path) as img:
        geninfo, items = read_info_from_image(img)
    assert geninfo == INFOTEXT
    assert "comment" not in items


def test_no_infotext_writes_no_metadata(tmp_path):
    for fmt in ("png", "jpg"):
        path = tmp_path / f"n.{fmt}"
        write_image_with_infotext(_image(), path, None, fmt)
        with Image.open(path) as img:
            assert read_info_from_image(img) == (None, {})


def test_other_formats_saved_without_metadata(tmp_path):
    path = tmp_path / "a.bmp"
    write_image_with_infotext(_image(), path, INFOTEXT, "bmp")
    with Image.open(path) as img:
        assert img.format == "BMP"
        assert read_info_from_image(img)[0] is None


def test_unknown_format_is_a_clear_error(tmp_path):
    with pytest.raises(ImageFormatError, match="Unknown image format 'nope'"):
        write_image_with_infotext(_image(), tmp_path / "a.nope", INFOTEXT, "nope")
    assert os.listdir(tmp_path) == []


def test_jpeg_infotext_too_large_writes_nothing(tmp_path):
    path = tmp_path / "big.jpg"
    with pytest.raises(InfotextTooLargeError, match="does not fit in a JPEG EXIF block"):
        write_image_with_infotext(_image(), path, "x" * 40000, "jpg")
    assert os.listdir(tmp_path) == []


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "keep.png"
    path.write_bytes(b"old content")
    img = _image()

    def broken_save(fp, *args, **kwargs):
        fp.write(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(img, "save", broken_save)
    with pytest.raises(ImageWriteError, match=r"Could not save image .*keep\.png: OSError: disk full"):
        write_image_with_infotext(img, path, INFOTEXT, "png")
    assert path.read_bytes() == b"old content"
    assert _leftovers(tmp_path) == [] and sorted(os.listdir(tmp_path)) == ["keep.png"]


def test_write_into_missing_folder_names_the_file(tmp_path):
    target = tmp_path / "missing" / "a.png"
    with pytest.raises(ImageWriteError, match="missing"):
        write_image_with_infotext(_image(), target, INFOTEXT, "png")


def test_novelai_png_is_converted(tmp_path):
    path = tmp_path / "nai.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "AI generated image")
    info.add_text("Description", "1girl, masterpiece")
    info.add_text("Software", "NovelAI")
    info.add_text("Source", "Stable Diffusion 1D44365E")
    comment = {"steps": 28, "sampler": "k_euler_ancestral", "seed": 42, "strength": 0.7, "noise": 0.2,
               "scale": 11.0, "uc": "lowres, bad anatomy"}  # fmt: skip
    info.add_text("Comment", json.dumps(comment))
    Image.new("RGB", (64, 48)).save(path, pnginfo=info)
    with Image.open(path) as img:
        geninfo, items = read_info_from_image(img)
    assert geninfo == (
        "1girl, masterpiece\nNegative prompt: lowres, bad anatomy\n"
        "Steps: 28, Sampler: Euler a, CFG scale: 11.0, Seed: 42, Size: 64x48, Clip skip: 2, ENSD: 31337"
    )
    assert items["Software"] == "NovelAI"


def test_novelai_with_broken_comment_gives_no_infotext(tmp_path):
    path = tmp_path / "nai.png"
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "NovelAI")
    info.add_text("Comment", "{not json")
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    with Image.open(path) as img:
        assert read_info_from_image(img)[0] is None


def test_comfyui_chunks_are_returned_raw(tmp_path):
    path = tmp_path / "comfy.png"
    prompt = json.dumps({"3": {"class_type": "KSampler", "inputs": {"seed": 5, "steps": 20}}})
    workflow = json.dumps({"nodes": [{"id": 3, "type": "KSampler"}], "links": []})
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", prompt)
    info.add_text("workflow", workflow)
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    with Image.open(path) as img:
        geninfo, items = read_info_from_image(img)
    assert geninfo is None
    assert items == {"prompt": prompt, "workflow": workflow}


def test_postprocessing_chunk_kept_beside_parameters(tmp_path):
    path = tmp_path / "extras.png"
    extra = {"postprocessing": "Postprocess upscale by: 2, Postprocess upscaler: R-ESRGAN 4x+", "extras": "x"}
    write_image_with_infotext(_image(), path, INFOTEXT, "png", extra_pnginfo=extra)
    with Image.open(path) as img:
        geninfo, items = read_info_from_image(img)
    assert geninfo == INFOTEXT
    assert items == extra


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"UNICODE\0" + "héllo".encode("utf-16-be"), "héllo"),
        (b"UNICODE\0" + "héllo".encode("utf-16-le"), "héllo"),  # written little-endian by some tools
        (b"UNICODE\0" + "héllo".encode("utf-16"), "héllo"),  # with a BOM
        (b"ASCII\0\0\0hello", "hello"),
        (b"\0" * 8 + "héllo".encode(), "héllo"),
        (b"Steps: 20, raw utf-8", "Steps: 20, raw utf-8"),
    ],
)
def test_decode_user_comment(raw, expected):
    assert decode_user_comment(raw) == expected


def test_sd_parsers_reads_our_png_and_jpeg(tmp_path):
    sd_parsers = pytest.importorskip("sd_parsers")  # pinned sd-parsers==0.6 (MIT), a real third-party reader
    manager = sd_parsers.ParserManager()
    for fmt in ("png", "jpg", "webp"):
        path = tmp_path / f"ours.{fmt}"
        write_image_with_infotext(_image(), path, INFOTEXT, fmt)
        info = manager.parse(str(path))
        assert info is not None, fmt
        assert info.generator.name == "AUTOMATIC1111"
        sampler = info.samplers[0]
        assert sampler.name == "DPM++ 2M"
        assert sampler.parameters["scheduler"] == "Karras"
        assert sampler.parameters["steps"] == "25"
        assert sampler.parameters["seed"] == "1234"
        assert sampler.parameters["cfg_scale"] == "6.5"
        assert [str(p) for p in sampler.prompts] == ["a cat, (blue eyes:1.2)\nsecond line"]
        assert [str(p) for p in sampler.negative_prompts] == ["ugly, blurry"]
        assert (sampler.model.name, sampler.model.hash) == ("v1-5-pruned-emaonly", "6ce0161689")
