"""Prompt styles: A1111 styles.csv reading/writing, `{prompt}` placement, several files, extraction, bad rows."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from modules.styles import (
    PromptStyle,
    StyleDatabase,
    StyleError,
    apply_negative_styles_to_prompt,
    apply_styles_to_prompt,
    extract_style_text,
    merge_prompts,
)

A1111_FILE = (
    "\ufeffname,prompt,negative_prompt\r\n"
    'cinematic,"cinematic still {prompt}, film grain","cartoon, anime"\r\n'
    'sharp,"sharp focus, 8k",blurry\r\n'
    'neg only,,"lowres, bad hands"\r\n'
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.reader(f))


# --- applying --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("style", "prompt", "expected"),
    [
        ("masterpiece", "a cat", "a cat, masterpiece"),
        ("masterpiece", "", "masterpiece"),
        ("", "a cat", "a cat"),
        ("  masterpiece  ", "  a cat ", "a cat, masterpiece"),
        ("photo of {prompt}, bokeh", "a cat", "photo of a cat, bokeh"),
        ("{prompt}", "a cat", "a cat"),
        ("{prompt} and {prompt}", "x", "x and x"),
        ("photo of {prompt}", "", "photo of "),
    ],
)
def test_merge_prompts(style: str, prompt: str, expected: str) -> None:
    assert merge_prompts(style, prompt) == expected


def test_styles_apply_in_order_each_wrapping_the_previous() -> None:
    assert apply_styles_to_prompt("cat", ["photo of {prompt}", "sharp"]) == "photo of cat, sharp"
    assert apply_styles_to_prompt("cat", ["sharp", "photo of {prompt}"]) == "photo of cat, sharp"
    assert apply_styles_to_prompt("cat", ["a", "[{prompt}]"]) == "[cat, a]"
    assert apply_negative_styles_to_prompt("ugly", ["blurry", "{prompt}, lowres"]) == "ugly, blurry, lowres"


# --- reading ---------------------------------------------------------------------------------------


def test_reads_a1111_file_with_bom_quotes_and_placeholder(tmp_path: Path) -> None:
    db = StyleDatabase([write(tmp_path / "styles.csv", A1111_FILE)])
    assert db.errors == []
    assert db.names() == ["cinematic", "sharp", "neg only"]
    assert db.styles["cinematic"] == PromptStyle(
        "cinematic", "cinematic still {prompt}, film grain", "cartoon, anime", str(tmp_path / "styles.csv")
    )
    assert (
        db.apply_styles_to_prompt("a cat", ["cinematic", "sharp"])
        == "cinematic still a cat, film grain, sharp focus, 8k"
    )
    assert db.apply_negative_styles_to_prompt("", ["cinematic", "neg only"]) == "cartoon, anime, lowres, bad hands"
    # Unknown names are ignored when applying (A1111) and listed by missing() for the UI to report.
    assert db.apply_styles_to_prompt("a cat", ["nope"]) == "a cat"
    assert db.missing(["sharp", "nope"]) == ["nope"]


def test_old_text_column_spaces_after_commas_and_comment_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "old.csv", "name, text\n# a comment, ignored\nold, red hair\nbare\n")
    db = StyleDatabase([path])
    assert db.errors == []
    assert db.styles["old"].prompt == "red hair"  # skipinitialspace, as A1111
    assert db.styles["bare"] == PromptStyle("bare", "", "", str(path))
    assert "# a comment" not in db.styles


def test_bad_rows_are_reported_and_kept_on_save(tmp_path: Path) -> None:
    text = "name,prompt,negative_prompt\ngood,a,b\n,orphan prompt,x\nbroken,a, b,c,d\ngood2,c,\n"
    path = write(tmp_path / "styles.csv", text)
    db = StyleDatabase([path])
    assert db.names() == ["good", "good2"]
    assert len(db.errors) == 2
    assert "line 3" in db.errors[0] and "without a name" in db.errors[0]
    assert "line 4" in db.errors[1] and "5 fields" in db.errors[1]
    db.save_style(PromptStyle("new", "n", ""))
    # The unreadable rows are still in the file, unchanged, so nothing the user wrote is lost.
    assert rows(path) == [
        ["name", "prompt", "negative_prompt"],
        ["good", "a", "b"],
        ["", "orphan prompt", "x"],
        ["broken", "a", "b", "c", "d"],
        ["good2", "c", ""],
        ["new", "n", ""],
    ]
    assert len(StyleDatabase([path]).errors) == 2


@pytest.mark.parametrize(
    "content",
    [
        b"name,prompt\nx,\xff\xfe bad bytes\n",
        b"prompt,negative\nx,y\n",
    ],
    ids=["not-utf8", "no-name-column"],
)
def test_unreadable_file_is_reported_and_never_overwritten(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(content)
    good = write(tmp_path / "good.csv", "name,prompt,negative_prompt\nkeep,k,\n")
    db = StyleDatabase([bad, good])
    assert db.names() == ["keep"]
    assert len(db.errors) == 1 and str(bad) in db.errors[0]
    with pytest.raises(StyleError, match="not overwritten"):
        db.save_style(PromptStyle("new", "x", ""))  # default file is the unreadable one
    db.save_styles()
    assert bad.read_bytes() == content
    # The other file is still usable.
    db.save_style(PromptStyle("x", "y", "", str(good)))
    assert StyleDatabase([good]).styles["x"].prompt == "y"


def test_csv_error_midway_stops_reading_and_protects_the_file(tmp_path: Path) -> None:
    old_limit = csv.field_size_limit(100)
    try:
        path = write(tmp_path / "styles.csv", "name,prompt\nok,x\nbig," + "y" * 200 + "\nlater,z\n")
        db = StyleDatabase([path])
    finally:
        csv.field_size_limit(old_limit)
    assert db.names() == ["ok"]
    assert "line 3" in db.errors[0]
    with pytest.raises(StyleError, match="could not be read completely"):
        db.save_style(PromptStyle("ok", "changed", ""))


def test_duplicate_names_later_row_wins_and_earlier_is_kept(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", "name,prompt,negative_prompt\ndup,from a,\n")
    b = write(tmp_path / "b.csv", "name,prompt,negative_prompt\ndup,from b,\n")
    db = StyleDatabase([a, b])
    assert db.styles["dup"].prompt == "from b" and db.styles["dup"].path == str(b)
    assert "defined again" in db.errors[0]
    db.save_styles()
    assert rows(a)[1] == ["dup", "from a", ""]
    # Deleting the style removes the shadowed row too, so it does not come back on reload.
    db.delete_style("dup")
    assert "dup" not in StyleDatabase([a, b]).styles


# --- writing ---------------------------------------------------------------------------------------

TRICKY = [
    PromptStyle('comma, "quoted" name', 'say "hi", then {prompt}', "a,b", None),
    PromptStyle("multi line", "line one\nline two\r\nline three", "neg\nneg2", None),
    PromptStyle("spaces", "  leading spaces", " x ", None),
    PromptStyle("unicode ✓ 猫", "ünïcødé, 猫", "", None),
    PromptStyle("empty", "", "", None),
]


def test_round_trip_of_awkward_names_and_texts(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "styles.csv"
    db = StyleDatabase([path])
    for style in TRICKY:
        db.save_style(style)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")  # BOM, as A1111 writes
    again = StyleDatabase([path])
    assert again.errors == []
    assert list(again.styles.values()) == [s._replace(path=str(path)) for s in TRICKY]
    # What we write, Python's csv module (as A1111 reads it) reads the same way.
    with open(path, encoding="utf-8-sig", newline="") as f:
        read = {r["name"]: r for r in csv.DictReader(f, skipinitialspace=True)}
    assert read['comma, "quoted" name']["prompt"] == 'say "hi", then {prompt}'
    assert read["spaces"]["prompt"] == "  leading spaces"


def test_save_keeps_bak_and_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "styles.csv", A1111_FILE)
    db = StyleDatabase([path])
    db.save_style(PromptStyle("sharp", "sharper", "blurry"))
    bak = tmp_path / "styles.csv.bak"
    assert bak.read_bytes() == A1111_FILE.encode()
    assert StyleDatabase([path]).styles["sharp"].prompt == "sharper"
    # The order of the file is kept: an edited style stays where it was.
    assert [r[0] for r in rows(path)] == ["name", "cinematic", "sharp", "neg only"]

    # A failing write leaves the file as it was and no temporary file behind, and memory is rolled back.
    before = path.read_bytes()

    def fail(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(StyleError, match="No space left"):
        db.save_style(PromptStyle("sharp", "broken", ""))
    assert path.read_bytes() == before
    assert db.styles["sharp"].prompt == "sharper"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["styles.csv", "styles.csv.bak"]


def test_delete(tmp_path: Path) -> None:
    path = write(tmp_path / "styles.csv", A1111_FILE)
    db = StyleDatabase([path])
    db.delete_style("sharp")
    assert StyleDatabase([path]).names() == ["cinematic", "neg only"]
    with pytest.raises(StyleError, match="no style named 'sharp'"):
        db.delete_style("sharp")


@pytest.mark.parametrize("name", ["", "   ", "#comment", "two\nlines"])
def test_invalid_names_are_refused(tmp_path: Path, name: str) -> None:
    db = StyleDatabase([tmp_path / "styles.csv"])
    with pytest.raises(StyleError):
        db.save_style(PromptStyle(name, "x", ""))
    assert not (tmp_path / "styles.csv").exists()


# --- several files, wildcards, refresh ------------------------------------------------------------


def test_several_files_and_wildcards(tmp_path: Path) -> None:
    main = write(tmp_path / "styles.csv", "name,prompt,negative_prompt\nmain style,m,\n")
    write(tmp_path / "more" / "b.csv", "name,prompt,negative_prompt\nb style,b,\n")
    write(tmp_path / "more" / "a.csv", "name,prompt,negative_prompt\na style,a,\n")
    write(tmp_path / "more" / "notes.txt", "name,prompt\nignored,x\n")
    db = StyleDatabase([main, str(tmp_path / "more" / "*.csv")])
    assert db.all_styles_files == [main, tmp_path / "more" / "a.csv", tmp_path / "more" / "b.csv"]
    assert db.names() == ["main style", "a style", "b style"]
    assert db.choices()[0] == " STYLES.CSV ".center(40, "-") and "---- A.CSV ----" in db.choices()[2]
    # A new style goes to the default (first) file, an edited one stays in its own file.
    db.save_style(PromptStyle("new", "n", ""))
    db.save_style(PromptStyle("a style", "a2", ""))
    assert [r[0] for r in rows(main)] == ["name", "main style", "new"]
    assert rows(tmp_path / "more" / "a.csv")[1] == ["a style", "a2", ""]
    assert [r[0] for r in rows(tmp_path / "more" / "b.csv")] == ["name", "b style"]


def test_wildcard_first_path_default(tmp_path: Path) -> None:
    db = StyleDatabase([str(tmp_path / "styles" / "*.csv")])
    assert db.default_path == tmp_path / "styles" / "styles.csv"
    write(tmp_path / "styles" / "x.csv", "name,prompt\nx,1\n")
    assert StyleDatabase([str(tmp_path / "styles" / "*.csv")]).default_path == tmp_path / "styles" / "x.csv"


def test_refresh_if_changed(tmp_path: Path) -> None:
    path = write(tmp_path / "styles.csv", A1111_FILE)
    db = StyleDatabase([path, str(tmp_path / "extra-*.csv")])
    assert db.refresh_if_changed() is False
    db.save_style(PromptStyle("mine", "x", ""))
    assert db.refresh_if_changed() is False  # our own save is not a change
    write(path, "name,prompt,negative_prompt\nedited elsewhere,e,\n")
    os.utime(path, ns=(1, 1))  # make sure the mtime differs even on coarse clocks
    assert db.refresh_if_changed() is True
    assert db.names() == ["edited elsewhere"]
    write(tmp_path / "extra-1.csv", "name,prompt\nadded,a\n")
    assert db.refresh_if_changed() is True
    assert "added" in db.styles


# --- extraction (pasting infotext) ---------------------------------------------------------------


def test_extract_style_text() -> None:
    assert extract_style_text("sharp", "cat, sharp") == "cat"
    assert extract_style_text("sharp", "sharp") == ""
    assert extract_style_text("b", "crab") is None  # a suffix that is not a whole element
    assert extract_style_text("photo of {prompt}, bokeh", "photo of cat, bokeh") == "cat"
    assert extract_style_text("photo of {prompt}, bokeh", "cat, bokeh") is None
    assert extract_style_text("{prompt} and {prompt}", "x y and x y") == "x y"
    assert extract_style_text("{prompt} and {prompt}", "x and y") is None
    assert extract_style_text("", "anything") == "anything"


def test_extract_styles_reverses_apply(tmp_path: Path) -> None:
    db = StyleDatabase([write(tmp_path / "styles.csv", A1111_FILE)])
    applied = ["cinematic", "sharp", "neg only"]
    prompt = db.apply_styles_to_prompt("a red fox", applied)
    negative = db.apply_negative_styles_to_prompt("ugly", applied)
    assert db.extract_styles_from_prompt(prompt, negative) == (applied, "a red fox", "ugly")
    # Both prompts must match: the positive text alone is not enough.
    assert db.extract_styles_from_prompt("a red fox, sharp focus, 8k", "ugly") == (
        [],
        "a red fox, sharp focus, 8k",
        "ugly",
    )
    # A style whose texts are both empty never matches.
    db.save_style(PromptStyle("nothing", "", ""))
    assert db.extract_styles_from_prompt("cat", "")[0] == []


def test_extract_infotext_styles_modes(tmp_path: Path) -> None:
    from modules.infotext import create_infotext, parse_generation_parameters
    from modules.styles import extract_infotext_styles

    db = StyleDatabase([write(tmp_path / "styles.csv", A1111_FILE)])
    prompt = db.apply_styles_to_prompt("a red fox", ["cinematic", "sharp"])
    negative = db.apply_negative_styles_to_prompt("ugly", ["cinematic", "sharp"])
    text = create_infotext(prompt, negative, {"Steps": 20, "Sampler": "Euler", "CFG scale": 7, "Version": "v1.10.1"})

    res = extract_infotext_styles(parse_generation_parameters(text), db, "Apply if any")
    assert (res["Prompt"], res["Negative prompt"], res["Styles array"]) == ("a red fox", "ugly", ["cinematic", "sharp"])
    res = extract_infotext_styles(parse_generation_parameters(text), db, "Discard")
    assert res["Prompt"] == "a red fox" and "Styles array" not in res
    res = extract_infotext_styles(parse_generation_parameters(text), db, "Ignore")
    assert res["Prompt"] == prompt and "Styles array" not in res
    plain = create_infotext("no styles", "", {"Steps": 20, "Sampler": "Euler", "CFG scale": 7})
    assert "Styles array" not in extract_infotext_styles(parse_generation_parameters(plain), db, "Apply if any")
    assert extract_infotext_styles(parse_generation_parameters(plain), db, "Apply")["Styles array"] == []
    with pytest.raises(StyleError, match="infotext_styles"):
        extract_infotext_styles({}, db, "Sometimes")

    # Hires prompts: same styles -> removed there too; different styles -> nothing removed anywhere.
    hr_same = db.apply_styles_to_prompt("a red fox, detailed", ["cinematic", "sharp"])
    res = extract_infotext_styles({"Prompt": prompt, "Negative prompt": negative, "Hires prompt": hr_same}, db)
    assert res["Hires prompt"] == "a red fox, detailed" and res["Prompt"] == "a red fox"
    assert res["Hires negative prompt"] == ""
    res = extract_infotext_styles({"Prompt": prompt, "Negative prompt": negative, "Hires prompt": "other"}, db)
    assert res["Prompt"] == prompt and "Styles array" not in res


def test_old_and_extra_columns_survive_a_save(tmp_path: Path) -> None:
    old = write(tmp_path / "old.csv", "name,text\nold,red hair\n")
    extra = write(tmp_path / "extra.csv", "name,prompt,negative_prompt,description\nx,p,n,my notes\n")
    db = StyleDatabase([old, extra])
    db.save_styles()
    assert rows(old) == [["name", "prompt", "negative_prompt"], ["old", "red hair", ""]]
    db.save_style(PromptStyle("x", "p2", "n"))
    db.save_style(PromptStyle("y", "q", "", str(extra)))
    assert rows(extra) == [
        ["name", "prompt", "negative_prompt", "description"],
        ["x", "p2", "n", "my notes"],
        ["y", "q", "", ""],
    ]
    with pytest.raises(StyleError, match="not one of the styles files"):
        db.save_style(PromptStyle("z", "q", "", str(tmp_path / "elsewhere.csv")))
