"""Saving images: A1111 numbering and names, no overwrite, patterns, sanitising, length caps, grids, failures."""

from __future__ import annotations

import datetime as dt
import os
import threading
from types import SimpleNamespace

import pytest
from PIL import Image

from modules import images
from modules.filename_pattern import (
    FilenameContext,
    FilenameGenerator,
    avoid_reserved_name,
    sanitize_filename_part,
    truncate_utf8,
)
from modules.image_metadata import ImageWriteError, read_info_from_image
from modules.images import GridError, get_next_sequence_number, image_grid, save_image

NOW = dt.datetime(2024, 7, 27, 13, 5, 9)
INFO = "a cat\nNegative prompt: ugly\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 42, Size: 64x32"


def _img(color="red", size=(64, 32)) -> Image.Image:
    return Image.new("RGB", size, color)


def _opts(**kwargs):
    base = {"export_for_4chan": False}
    base.update(kwargs)
    return base


def _files(directory) -> list[str]:
    return sorted(os.listdir(directory))


# --------------------------------------------------------------------------------------- numbering


def test_next_sequence_number(tmp_path):
    assert get_next_sequence_number(tmp_path / "missing", "") == 0
    for name in ("00007-1.png", "00041-abc.jpg", "notes.txt", "grid-0003.png", "²-unicode-digit.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "2024-07-27").mkdir()  # a date folder must not count (A1111 numbered on from 2025)
    assert get_next_sequence_number(tmp_path, "") == 42
    assert get_next_sequence_number(tmp_path, "grid") == 4


def test_default_names_in_date_folder(tmp_path):
    opts = _opts()
    first = save_image(_img(), tmp_path, "", seed=42, prompt="a cat", info=INFO, opts=opts)
    second = save_image(_img(), tmp_path, "", seed=43, prompt="a cat", info=INFO, opts=opts)
    day = dt.date.today().strftime("%Y-%m-%d")
    assert first == (str(tmp_path / day / "00000-42.png"), None)
    assert second[0] == str(tmp_path / day / "00001-43.png")
    with Image.open(first[0]) as img:
        assert read_info_from_image(img)[0] == INFO


def test_default_name_without_subfolder_has_prompt(tmp_path):
    path, _ = save_image(_img(), tmp_path, "", seed=7, prompt="a cat, on: a mat", opts=_opts(save_to_dirs=False))
    assert os.path.basename(path) == "00000-7-a cat, on_ a mat.png"


def test_grid_and_basename_numbering(tmp_path):
    opts = _opts()
    a, _ = save_image(_img(), tmp_path, "grid", seed=1, prompt="x", short_filename=True, grid=True, opts=opts)
    b, _ = save_image(_img(), tmp_path, "grid", seed=1, prompt="x", short_filename=True, grid=True, opts=opts)
    assert [os.path.basename(a), os.path.basename(b)] == ["grid-0000.png", "grid-0001.png"]


def test_never_overwrites_when_number_is_taken(tmp_path, monkeypatch):
    folder = tmp_path / "out"
    folder.mkdir()
    taken = folder / "00000-42-p.png"
    taken.write_bytes(b"someone else's image")
    # Simulate a concurrent saver that took the number between our scan and our write.
    monkeypatch.setattr(images, "get_next_sequence_number", lambda path, basename: 0)
    path, _ = save_image(_img(), folder, "", seed=42, prompt="p", save_to_dirs=False, opts=_opts())
    assert os.path.basename(path) == "00001-42-p.png"
    assert taken.read_bytes() == b"someone else's image"


def test_concurrent_saves_get_distinct_numbers(tmp_path):
    results: list[str] = []
    errors: list[BaseException] = []

    def worker(i):
        try:
            results.append(save_image(_img(), tmp_path, "", seed=5, prompt="p", save_to_dirs=False, opts=_opts())[0])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(os.path.basename(r) for r in results) == [f"{i:05}-5-p.png" for i in range(8)]
    for r in results:
        with Image.open(r) as img:
            img.load()


def test_replace_action_for_unnumbered_names(tmp_path):
    opts = _opts(save_images_add_number=False, save_to_dirs=False, samples_filename_pattern="[seed]")
    first, _ = save_image(_img("red"), tmp_path, "", seed=42, prompt="p", opts=opts)
    save_image(_img("blue"), tmp_path, "", seed=42, prompt="p", opts=opts)  # "Replace": same name
    assert _files(tmp_path) == ["42.png"]
    with Image.open(first) as img:
        assert img.getpixel((0, 0)) == (0, 0, 255)
    opts["save_images_replace_action"] = "Add number suffix"
    third, _ = save_image(_img(), tmp_path, "", seed=42, prompt="p", opts=opts)
    fourth, _ = save_image(_img(), tmp_path, "", seed=42, prompt="p", opts=opts)
    assert [os.path.basename(third), os.path.basename(fourth)] == ["42-1.png", "42-2.png"]


def test_forced_filename_and_suffix(tmp_path):
    path, _ = save_image(_img(), tmp_path, "", forced_filename="input-name", save_to_dirs=False, opts=_opts())
    assert os.path.basename(path) == "input-name.png"
    path, _ = save_image(_img(), tmp_path, "", seed=3, prompt="p", suffix="-mask", save_to_dirs=False,
                         opts=_opts(samples_filename_pattern="[seed]"))  # fmt: skip
    assert os.path.basename(path) == "00000-3-mask.png"


# ------------------------------------------------------------------------------------------ patterns


def _ctx(**kwargs) -> FilenameContext:
    base = dict(
        seed=1234, all_seeds=[1234, 1235, 1236], prompt="a cat on a mat, masterpiece", negative_prompt="ugly",
        styles=["Anime", "None"], steps=20, cfg_scale=7.5, width=512, height=768, sampler_name="DPM++ 2M",
        scheduler="Automatic", model_name="v1-5-pruned", model_hash="6ce0161689", clip_skip=2, batch_size=3,
        batch_index=1, n_iter=2, iteration=1, job_timestamp="20240727130000", user="alice",
        vae_name="vae-ft-mse.safetensors", now=NOW,
    )  # fmt: skip
    base.update(kwargs)
    return FilenameContext(**base)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("[seed]-[steps]-[cfg]-[width]x[height]", "1234-20-7.5-512x768"),
        ("[seed_first]_[seed_last]", "1234_1236"),
        ("[sampler] [sampler_scheduler] [scheduler]", "DPM++ 2M DPM++ 2M Karras Karras"),
        ("[model_name] [model_hash] [clip_skip]", "v1-5-pruned 6ce0161689 2"),
        ("[date] [datetime] [datetime<%H-%M>] [job_timestamp]", "2024-07-27 20240727130509 13-05 20240727130000"),
        ("[prompt]", "a_cat_on_a_mat,_masterpiece"),
        ("[prompt_spaces]", "a cat on a mat, masterpiece"),
        ("[prompt_words]", "a cat on a mat masterpiece"),
        ("[styles]", "Anime"),
        ("[batch_number] [batch_size] [generation_number]", "2 3 5"),
        ("[hasprompt<cat|nocat><dog|nodog><mat>]", "catnodogmat"),
        ("[user] [vae_filename] [none]x", "alice vae-ft-mse x"),
        ("[prompt_hash] [prompt_hash<4>]", "9c4e9c5d 9c4e"),
        # unknown tokens, and arguments given to a token that takes none, stay literal (A1111 too)
        ("[unknown_token] [seed<x>] [UNKNOWN<a><b>]", "[unknown_token] [seed<x>] [UNKNOWN<a><b>]"),
        ("[SEED]", "1234"),  # token names are case-insensitive
        ("x-[denoising]", ""),  # missing value: nothing, and the text before it is dropped
        ("[negative_prompt]", "ugly"),
    ],
)
def test_pattern_tokens(pattern, expected):
    gen = FilenameGenerator(_ctx(), max_prompt_words=8)
    if "prompt_hash" in pattern:
        import hashlib

        digest = hashlib.sha256(b"a cat on a mat, masterpiece").hexdigest()
        expected = f"{digest[:8]} {digest[:4]}"
    assert gen.apply(pattern) == expected


def test_skip_tokens_for_single_images():
    gen = FilenameGenerator(_ctx(batch_size=1, n_iter=1, all_seeds=[1234]))
    assert gen.apply("[seed]-[seed_last]") == "1234"
    assert gen.apply("[seed]-[batch_number]-[generation_number]") == "1234"
    assert gen.apply("[seed_first]") == "1234"


def test_unavailable_values_stay_literal():
    gen = FilenameGenerator(FilenameContext(now=NOW))
    assert gen.apply("[seed]|[steps]|[prompt]|[user]|[image_hash]") == "|[steps]|[prompt]|[user]|[image_hash]"
    assert gen.apply("[vae_filename]") == "NoneType"
    assert gen.apply("[prompt_words]") == "empty"


def test_datetime_with_time_zone_and_bad_zone():
    aware = dt.datetime(2024, 7, 27, 12, 0, 0, tzinfo=dt.timezone.utc)
    gen = FilenameGenerator(_ctx(now=aware))
    assert gen.apply("[datetime<%Y-%m-%d_%H-%M><Europe/Paris>]") == "2024-07-27_14-00"
    assert gen.apply("[datetime<%H><Asia/Tokyo>]") == "21"
    assert gen.apply("[datetime<%H><Not/AZone>]") == aware.astimezone(None).strftime("%H")


def test_prompt_words_limit_and_prompt_no_styles():
    gen = FilenameGenerator(_ctx(prompt="one, two; three... four (five) six"), max_prompt_words=3)
    assert gen.apply("[prompt_words]") == "one two three"
    ctx = _ctx(prompt="a cat, masterpiece, best quality", style_prompts=["masterpiece, best quality"])
    assert FilenameGenerator(ctx).apply("[prompt_no_styles]") == "a cat"
    ctx = _ctx(prompt="photo of a cat, 35mm", style_prompts=["photo of {prompt}, 35mm"])
    assert FilenameGenerator(ctx).apply("[prompt_no_styles]") == "a cat"


def test_image_hash_and_size_from_image():
    img = _img(size=(10, 20))
    gen = FilenameGenerator(_ctx(image=img))
    import hashlib

    assert gen.apply("[image_hash<10>]") == hashlib.sha256(img.tobytes()).hexdigest()[:10]
    assert gen.apply("[width]x[height]") == "10x20"


def test_scheduler_labels_not_mangled():
    gen = FilenameGenerator(_ctx(sampler_name="Euler", scheduler="SGM Uniform"))
    assert gen.apply("[sampler_scheduler]") == "Euler SGM Uniform"  # A1111 gave "Euler Sgm uniform"
    gen = FilenameGenerator(_ctx(sampler_name="DPM++ 2M SDE", scheduler="Automatic"))
    assert gen.apply("[scheduler]") == "Exponential"
    gen = FilenameGenerator(_ctx(sampler_name=None))
    assert gen.apply("a-[scheduler]") == ""


# ----------------------------------------------------------------------------------------- sanitising


def test_sanitize_filename_part():
    assert sanitize_filename_part('a<b>c:d"e/f\\g|h?i*j#k\nl\rm\tn') == "a_b_c_d_e_f_g_h_i_j_k_l_m_n"
    assert sanitize_filename_part("  lead and trail . . ", replace_spaces=False) == "lead and trail"
    assert sanitize_filename_part("a b") == "a_b"
    assert sanitize_filename_part("a:b/c", unix_only=True) == "a:b_c"
    assert sanitize_filename_part(None) is None


def test_every_token_value_is_sanitised():
    gen = FilenameGenerator(_ctx(user="../../etc/passwd", model_name="sub/dir:model"))
    assert gen.apply("[user]_[model_name]") == ".._.._etc_passwd_sub_dir_model"  # no separator survives


def test_length_cap_is_in_utf8_bytes_and_never_splits_characters():
    assert truncate_utf8("猫" * 100, 128) == "猫" * 42  # 126 bytes; the 43rd character would not fit
    assert truncate_utf8("ab猫", 4) == "ab"
    gen = FilenameGenerator(_ctx(prompt="猫" * 200), max_part_bytes=128)
    value = gen.apply("[prompt_spaces]")
    assert value == "猫" * 42
    assert len(value.encode("utf-8")) <= 128


def test_long_multibyte_names_fit_the_filesystem(tmp_path):
    pattern = "[prompt_spaces]-[prompt_spaces]-[prompt_spaces]"
    opts = _opts(samples_filename_pattern=pattern, save_to_dirs=False)
    path, _ = save_image(_img(), tmp_path, "", seed=1, prompt="é猫" * 200, opts=opts)
    name = os.path.basename(path)
    assert name.startswith("00000-é猫") and name.endswith(".png")
    assert len(name.encode("utf-8")) <= 255
    name.encode("utf-8").decode("utf-8")  # valid UTF-8: no character cut in half
    assert os.path.getsize(path) > 0


def test_windows_reserved_names():
    assert avoid_reserved_name("CON") == "_CON"
    assert avoid_reserved_name("nul.png") == "_nul.png"
    assert avoid_reserved_name("com1.tar.gz") == "_com1.tar.gz"
    assert avoid_reserved_name("console.png") == "console.png"


def test_reserved_name_from_prompt_is_prefixed(tmp_path):
    opts = _opts(save_images_add_number=False, samples_filename_pattern="[prompt_spaces]",
                 directories_filename_pattern="[prompt_words]")  # fmt: skip
    path, _ = save_image(_img(), tmp_path, "", seed=1, prompt="aux", opts=opts)
    assert path == str(tmp_path / "_aux" / "_aux.png")


def test_directory_pattern_cannot_escape_output_folder(tmp_path):
    out = tmp_path / "out"
    opts = _opts(directories_filename_pattern="../../[seed]/./..")
    path, _ = save_image(_img(), out, "", seed=9, prompt="p", opts=opts)
    assert path == str(out / "9" / "00000-9.png")
    opts = _opts(directories_filename_pattern="[date]/[model_name]")
    p = SimpleNamespace(sd_model_name="sdxl")
    path, _ = save_image(_img(), out, "", seed=9, prompt="p", p=p, opts=opts)
    assert path == str(out / dt.date.today().strftime("%Y-%m-%d") / "sdxl" / "00000-9.png")


def test_slash_in_file_pattern_does_not_create_folders(tmp_path):
    opts = _opts(samples_filename_pattern="a/b-[seed]", save_to_dirs=False)
    path, _ = save_image(_img(), tmp_path, "", seed=1, prompt="p", opts=opts)
    assert os.path.basename(path) == "00000-a_b-1.png"


# ---------------------------------------------------------------------------------- metadata options


def test_save_txt_sidecar_and_jpeg_exif(tmp_path):
    opts = _opts(save_txt=True, save_to_dirs=False, samples_filename_pattern="[seed]")
    path, txt = save_image(_img(), tmp_path, "", seed=42, prompt="a cat", extension="jpg", info=INFO, opts=opts)
    assert path.endswith("00000-42.jpg") and txt == path[:-4] + ".txt"
    with open(txt, encoding="utf8") as f:
        assert f.read() == INFO + "\n"
    with Image.open(path) as img:
        assert read_info_from_image(img)[0] == INFO


def test_enable_pnginfo_off_writes_no_metadata(tmp_path):
    opts = _opts(enable_pnginfo=False, save_to_dirs=False)
    path, _ = save_image(_img(), tmp_path, "", seed=1, prompt="p", info=INFO, existing_info={"extras": "x"},
                         opts=opts)  # fmt: skip
    with Image.open(path) as img:
        assert read_info_from_image(img) == (None, {})


def test_existing_info_and_callbacks(tmp_path):
    seen = {}

    def before(params):
        seen["before"] = params.filename
        params.pnginfo["parameters"] += ", Extra: 1"

    def after(params):
        seen["after"] = params.filename

    path, _ = save_image(
        _img(), tmp_path, "", seed=1, prompt="p", info=INFO, existing_info={"postprocessing": "Upscale: 2"},
        save_to_dirs=False, opts=_opts(), before_save=before, after_save=after,
    )  # fmt: skip
    assert seen == {"before": path, "after": path}
    with Image.open(path) as img:
        geninfo, items = read_info_from_image(img)
    assert geninfo == INFO + ", Extra: 1"
    assert items == {"postprocessing": "Upscale: 2"}


def test_processing_object_feeds_patterns(tmp_path):
    p = SimpleNamespace(steps=30, cfg_scale=5, sampler_name="Euler a", scheduler="Automatic",
                        sd_model_name="dreamshaper", sd_model_hash="abcdef0123", styles=[], batch_size=1)  # fmt: skip
    opts = _opts(samples_filename_pattern="[model_name]-[steps]-[cfg]-[sampler_scheduler]", save_to_dirs=False)
    path, _ = save_image(_img(), tmp_path, "", seed=1, prompt="p", p=p, opts=opts)
    assert os.path.basename(path) == "00000-dreamshaper-30-5-Euler a Automatic.png"
    gen = images.FilenameGenerator(p, 5, "a cat", _img())  # A1111's constructor signature
    assert gen.apply("[seed]-[prompt]-[model_hash]") == "5-a_cat-abcdef0123"


def test_too_large_for_webp_falls_back_to_png(tmp_path):
    wide = Image.new("L", (16384, 1))
    path, _ = save_image(wide, tmp_path, "", seed=1, prompt="p", extension="webp", save_to_dirs=False, opts=_opts())
    assert path.endswith(".png")


def test_export_for_4chan_writes_downscaled_jpg(tmp_path):
    opts = {"export_for_4chan": True, "target_side_length": 32, "save_to_dirs": False}
    path, _ = save_image(_img(size=(64, 16)), tmp_path, "", seed=1, prompt="p", opts=opts)
    jpg = path[:-4] + ".jpg"
    with Image.open(jpg) as img:
        assert img.size == (32, 8)
    with Image.open(path) as img:
        assert img.size == (64, 16)


# ---------------------------------------------------------------------------------------- failures


def test_failed_save_raises_clear_error_and_keeps_earlier_files(tmp_path):
    opts = _opts(save_to_dirs=False)
    good, _ = save_image(_img(), tmp_path, "", seed=1, prompt="p", info=INFO, opts=opts)
    bad = _img()

    def broken_save(fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("No space left on device")

    bad.save = broken_save
    with pytest.raises(ImageWriteError, match=r"Could not save image .*00001-2-p\.png: OSError: No space left"):
        save_image(bad, tmp_path, "", seed=2, prompt="p", info=INFO, opts=opts)
    assert _files(tmp_path) == [os.path.basename(good)]  # no placeholder, no temp file, first image kept
    with Image.open(good) as img:
        assert read_info_from_image(img)[0] == INFO
    again, _ = save_image(_img(), tmp_path, "", seed=2, prompt="p", opts=opts)
    assert os.path.basename(again) == "00001-2-p.png"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder_names_the_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(ImageWriteError, match="ro"):
            save_image(_img(), folder, "", seed=1, prompt="p", save_to_dirs=False, opts=_opts())
        assert _files(folder) == []
    finally:
        folder.chmod(0o755)


def test_permission_error_names_the_file(tmp_path, monkeypatch):
    def refuse(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(images, "_reserve", refuse)
    with pytest.raises(ImageWriteError, match=r"Could not save image .*\*\.png: Permission denied"):
        save_image(_img(), tmp_path, "", seed=1, prompt="p", save_to_dirs=False, opts=_opts())
    assert _files(tmp_path) == []


def test_output_folder_that_is_a_file(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"not a folder")
    with pytest.raises(ImageWriteError, match="blocker.*cannot create the folder"):
        save_image(_img(), blocker / "sub", "", seed=1, prompt="p", save_to_dirs=False, opts=_opts())
    assert blocker.read_bytes() == b"not a folder"


def test_failing_callback_removes_reservation(tmp_path):
    def before(params):
        raise RuntimeError("extension bug")

    with pytest.raises(ImageWriteError, match="RuntimeError: extension bug"):
        save_image(_img(), tmp_path, "", seed=1, prompt="p", save_to_dirs=False, opts=_opts(), before_save=before)
    assert _files(tmp_path) == []


def test_unknown_format_fails_before_touching_disk(tmp_path):
    with pytest.raises(ValueError, match="Unknown image format"):
        save_image(_img(), tmp_path / "new", "", seed=1, prompt="p", extension="xyz", opts=_opts())
    assert not (tmp_path / "new").exists()


# -------------------------------------------------------------------------------------------- grids


@pytest.mark.parametrize(
    ("n", "opts", "batch_size", "rows", "expected_grid"),
    [
        (5, {}, 1, None, (3, 2)),  # auto: round(sqrt(5)) = 2 rows, 3 columns
        (4, {}, 1, None, (2, 2)),
        (8, {"n_rows": 0}, 4, None, (2, 4)),  # 0 = batch size rows
        (6, {"n_rows": 3}, 1, None, (2, 3)),
        (7, {"grid_prevent_empty_spots": True}, 1, None, (7, 1)),  # 7 is prime: one row, no empty cell
        (8, {"grid_prevent_empty_spots": True}, 1, None, (4, 2)),
        (3, {}, 1, 10, (1, 3)),  # more rows than images: capped
    ],
)
def test_grid_layout(n, opts, batch_size, rows, expected_grid):
    grid = image_grid([_img() for _ in range(n)], batch_size=batch_size, rows=rows, opts=opts)
    cols, nrows = expected_grid
    assert grid.size == (cols * 64, nrows * 32)


def test_grid_centres_smaller_images_on_background():
    big, small = Image.new("RGB", (40, 40), "red"), Image.new("RGB", (20, 20), "blue")
    grid = image_grid([big, small], rows=1, opts={"grid_background_color": "#00ff00"})
    assert grid.size == (80, 40)
    assert grid.getpixel((50, 20)) == (0, 0, 255)  # centred small image
    assert grid.getpixel((41, 1)) == (0, 255, 0)  # background around it
    assert grid.getpixel((0, 0)) == (255, 0, 0)


def test_grid_callback_can_change_layout_and_errors():
    def one_column(params):
        params.cols, params.rows = 1, len(params.imgs)

    grid = image_grid([_img()] * 3, on_grid=one_column)
    assert grid.size == (64, 96)
    with pytest.raises(GridError, match="zero images"):
        image_grid([])

    def too_small(params):
        params.cols, params.rows = 1, 1

    with pytest.raises(GridError, match="cannot hold 3 images"):
        image_grid([_img()] * 3, on_grid=too_small)
