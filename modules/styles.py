"""Prompt styles: A1111's styles.csv files (several, wildcards allowed), applying and extracting styles."""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from modules.errors import WebUIError

log = logging.getLogger(__name__)

PLACEHOLDER = "{prompt}"
FIELDS = ("name", "prompt", "negative_prompt")
_GLOB_CHARS = frozenset("*?")  # as A1111: `[` is too common in real file names


class StyleError(WebUIError, ValueError):
    """A style could not be saved, deleted or read; the message names the style or file and the reason."""


class PromptStyle(NamedTuple):
    """One style; `path` is the file it is saved to (a str, as in A1111, so extensions can compare it)."""

    name: str
    prompt: str
    negative_prompt: str
    path: str | None = None


# --- applying and extracting (pure functions) ----------------------------------------------------


def merge_prompts(style_prompt: str, prompt: str) -> str:
    """Apply one style text: `{prompt}` is replaced by the prompt, otherwise the style is appended after ", "."""
    if PLACEHOLDER in style_prompt:
        return style_prompt.replace(PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), style_prompt.strip()) if part)


def apply_styles_to_prompt(prompt: str, styles: Iterable[str]) -> str:
    """Apply style texts in order (each wraps the result of the previous ones)."""
    for style_prompt in styles:
        prompt = merge_prompts(style_prompt or "", prompt)
    return prompt


def apply_negative_styles_to_prompt(prompt: str, styles: Iterable[str]) -> str:
    """Same rule for negative prompts; a separate name so call sites read like A1111's."""
    return apply_styles_to_prompt(prompt, styles)


def extract_style_text(style_text: str, prompt: str) -> str | None:
    """The prompt before `style_text` was applied to it, or None if applying it cannot give `prompt`.

    Every candidate is checked by applying the style again, so "cat, b" loses the style "b" but
    "crab" does not (A1111 accepts any suffix match).
    """
    target = prompt.strip()
    style = (style_text or "").strip()
    if PLACEHOLDER in style:
        parts = style.split(PLACEHOLDER)
        head, tail = parts[0], parts[-1]
        if not (target.startswith(head) and target.endswith(tail)) or len(target) < len(head) + len(tail):
            return None
        middle = target[len(head) : len(target) - len(tail)]
        count = len(parts) - 1
        inner = sum(len(p) for p in parts[1:-1])
        if (len(middle) - inner) % count:
            return None
        candidate = middle[: (len(middle) - inner) // count]
    elif not style:
        candidate = target
    elif target.endswith(style):
        candidate = target[: len(target) - len(style)].rstrip()
        candidate = candidate.removesuffix(",").rstrip()
    else:
        return None
    return candidate if merge_prompts(style, candidate).strip() == target else None


def extract_original_prompts(style: PromptStyle, prompt: str, negative_prompt: str) -> tuple[str, str] | None:
    """(prompt, negative) with `style` removed from both, or None if the style does not match both."""
    if not style.prompt and not style.negative_prompt:
        return None
    positive = extract_style_text(style.prompt, prompt)
    if positive is None:
        return None
    negative = extract_style_text(style.negative_prompt, negative_prompt)
    if negative is None:
        return None
    return positive, negative


# --- the database ---------------------------------------------------------------------------------


@dataclass
class _Row:
    """A CSV row as read: `name` is set while the row is the live definition of a style, else kept verbatim."""

    fields: list[str]
    name: str | None = None


@dataclass
class _File:
    path: Path
    header: list[str] = field(default_factory=lambda: list(FIELDS))
    rows: list[_Row] = field(default_factory=list)
    writable: bool = True  # False when it could not be read completely: saving would lose data


def _expand(patterns: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files named by the patterns, in order, without duplicates; a pattern without wildcards is kept even if absent."""
    import glob

    files: list[Path] = []
    for pattern in patterns:
        text = os.path.expanduser(os.fspath(pattern))
        if _GLOB_CHARS & set(text):
            found = [Path(p) for p in sorted(glob.glob(text, recursive=True)) if os.path.isfile(p)]
        else:
            found = [Path(text)]
        for path in found:
            if path not in files:
                files.append(path)
    return files


def _default_path(patterns: Sequence[str | os.PathLike[str]]) -> Path | None:
    """Where new styles go: the first path; for a wildcard pattern its first match, else styles.csv beside it."""
    if not patterns:
        return None
    first = os.path.expanduser(os.fspath(patterns[0]))
    if not (_GLOB_CHARS & set(first)):
        return Path(first)
    matches = _expand([first])
    if matches:
        return matches[0]
    folder = Path(first).parent
    while _GLOB_CHARS & set(str(folder)):
        folder = folder.parent
    return folder / "styles.csv"


def _stat_key(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class StyleDatabase:
    """Styles from one or more CSV files (`--styles-file`, repeatable, wildcards allowed).

    `styles` maps name -> PromptStyle; when a name appears twice the later row wins (as A1111), and
    the earlier one is kept untouched in its file. Problems found while reading are listed in
    `errors` (file, line, reason) instead of raising; unreadable rows and `#` comment rows are
    written back unchanged on save, and a file that could not be read completely is never rewritten.
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]]) -> None:
        self.paths: list[str | os.PathLike[str]] = list(paths)
        self.default_path: Path | None = _default_path(self.paths)
        self.styles: dict[str, PromptStyle] = {}
        self.errors: list[str] = []
        self._files: dict[Path, _File] = {}
        self._snapshot: dict[Path, tuple[int, int] | None] = {}
        self._lock = threading.RLock()
        self.reload()

    # --- reading ------------------------------------------------------------------------------
    @property
    def all_styles_files(self) -> list[Path]:
        return list(self._files)

    def _watched_files(self) -> list[Path]:
        files = _expand(self.paths)
        if self.default_path is not None and self.default_path not in files:
            files.insert(0, self.default_path)
        return files

    def reload(self) -> None:
        """Read every file again (the whole set of files too: a new file matching a wildcard is picked up)."""
        with self._lock:
            self.styles.clear()
            self.errors = []
            self._files = {}
            self._snapshot = {}
            live: dict[str, _Row] = {}
            for path in self._watched_files():
                self._snapshot[path] = _stat_key(path)
                self._files[path] = self._read_file(path, live)
            for message in self.errors:
                log.warning("styles: %s", message)

    def refresh_if_changed(self) -> bool:
        """Reload if a file was added, removed or modified since the last read or save; True if reloaded."""
        with self._lock:
            current = {path: _stat_key(path) for path in self._watched_files()}
            if current == self._snapshot:
                return False
            self.reload()
            return True

    def _read_file(self, path: Path, live: dict[str, _Row]) -> _File:
        state = _File(path)
        if not path.exists():
            return state
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as e:
            state.writable = False
            self.errors.append(f"{path}: not UTF-8 text (byte {e.start}); file ignored and never overwritten")
            return state
        except OSError as e:
            state.writable = False
            self.errors.append(f"{path}: cannot be read: {e.strerror or e}")
            return state
        reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True)
        try:
            header = next((row for row in reader if any(cell.strip() for cell in row)), None)
            if header is None:
                return state  # empty file
            columns = [cell.strip().lower() for cell in header]
            prompt_column = "prompt" if "prompt" in columns else "text"  # very old files have `text`
            if "name" not in columns or prompt_column not in columns:
                state.writable = False
                self.errors.append(
                    f"{path}: first line must be the header name,prompt,negative_prompt, got {','.join(header)!r}; "
                    "file ignored and never overwritten"
                )
                return state
            state.header = list(FIELDS) + [c for c in columns if c not in (*FIELDS, "text")]
            index = {c: i for i, c in reversed(list(enumerate(columns)))}
            for fields in reader:
                line = reader.line_num
                if not any(cell.strip() for cell in fields):
                    continue
                # Keep the row in the file's own order but with our header's column order.
                values = {c: fields[i] for c, i in index.items() if i < len(fields)}
                values["prompt"] = values.pop(prompt_column, "")
                values.pop("text", None)
                row = _Row([values.get(c, "") for c in state.header])
                state.rows.append(row)
                name = values.get("name", "")
                if name.startswith("#"):
                    continue
                if len(fields) > len(columns):
                    self.errors.append(
                        f"{path}, line {line}: {len(fields)} fields but the header has {len(columns)} "
                        "(a comma in an unquoted prompt?); row skipped"
                    )
                    row.fields = fields  # verbatim, so that saving keeps it
                    continue
                if not name.strip():
                    self.errors.append(f"{path}, line {line}: a style without a name; row skipped")
                    continue
                previous = live.get(name)
                if previous is not None:
                    self.errors.append(f"{path}, line {line}: style {name!r} is defined again; this row wins")
                    previous.name = None
                row.name = name
                live[name] = row
                self.styles[name] = PromptStyle(
                    name, values.get("prompt", ""), values.get("negative_prompt", ""), str(path)
                )
        except csv.Error as e:
            state.writable = False
            self.errors.append(
                f"{path}, line {reader.line_num}: {e}; the rest of the file is ignored "
                "and the file is never overwritten"
            )
        return state

    # --- queries ------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self.styles)

    def choices(self) -> list[str]:
        """Names for a dropdown; with several files each file's styles follow a `---- NAME ----` divider."""
        if len(self._files) < 2:
            return self.names()
        out: list[str] = []
        for path in self._files:
            out.append(f" {path.name.upper()} ".center(40, "-"))
            out.extend(name for name, style in self.styles.items() if style.path == str(path))
        return out

    def missing(self, names: Iterable[str]) -> list[str]:
        """The names that are not styles (the UI reports them; applying ignores them like A1111)."""
        return [name for name in names if name not in self.styles]

    def get_style_prompts(self, names: Iterable[str]) -> list[str]:
        return [self.styles[n].prompt for n in names if n in self.styles]

    def get_negative_style_prompts(self, names: Iterable[str]) -> list[str]:
        return [self.styles[n].negative_prompt for n in names if n in self.styles]

    def apply_styles_to_prompt(self, prompt: str, names: Iterable[str]) -> str:
        return apply_styles_to_prompt(prompt, self.get_style_prompts(names))

    def apply_negative_styles_to_prompt(self, prompt: str, names: Iterable[str]) -> str:
        return apply_negative_styles_to_prompt(prompt, self.get_negative_style_prompts(names))

    def extract_styles_from_prompt(self, prompt: str, negative_prompt: str) -> tuple[list[str], str, str]:
        """(style names in the order they were applied, prompt, negative) with those styles removed.

        The reverse of applying: the outermost style (applied last) is found first; each style is
        used at most once and must match the prompt and the negative prompt together.
        """
        with self._lock:
            candidates = list(self.styles.values())
        found: list[str] = []
        while True:
            for style in candidates:
                result = extract_original_prompts(style, prompt, negative_prompt)
                if result is not None:
                    prompt, negative_prompt = result
                    found.append(style.name)
                    candidates.remove(style)
                    break
            else:
                break
        return list(reversed(found)), prompt, negative_prompt

    # --- writing ------------------------------------------------------------------------------
    def save_style(self, style: PromptStyle) -> PromptStyle:
        """Add or replace a style and save its file; an existing style keeps its file, a new one goes to the default."""
        name = style.name
        if not isinstance(name, str) or not name.strip():
            raise StyleError("A style needs a name")
        if name.startswith("#"):
            raise StyleError(f"Style name {name!r} starts with '#', which marks a comment line in styles.csv")
        if "\n" in name or "\r" in name:
            raise StyleError(f"Style name {name!r} must be a single line")
        with self._lock:
            existing = self.styles.get(name)
            if existing is not None and existing.path:
                path = existing.path
            elif style.path:
                path = str(style.path)
                if Path(path) not in self._files:
                    raise StyleError(f"{path} is not one of the styles files ({', '.join(map(str, self._files))})")
            elif self.default_path is not None:
                path = str(self.default_path)
            else:
                raise StyleError("No styles file is configured (--styles-file)")
            saved = PromptStyle(name, style.prompt or "", style.negative_prompt or "", path)
            self._check_writable(Path(path))
            self.styles[name] = saved
            self._files.setdefault(Path(path), _File(Path(path)))
            try:
                self._write(Path(path))
            except StyleError:
                if existing is None:
                    del self.styles[name]
                else:
                    self.styles[name] = existing
                raise
            return saved

    def delete_style(self, name: str) -> None:
        """Remove a style (and rows it shadowed) and save its file."""
        with self._lock:
            style = self.styles.get(name)
            if style is None:
                raise StyleError(f"There is no style named {name!r}")
            touched = {Path(style.path)} if style.path else set()
            for path, state in self._files.items():
                if any(row.name is None and row.fields[:1] == [name] for row in state.rows):
                    touched.add(path)
            for path in touched:
                self._check_writable(path)
            del self.styles[name]
            for path in touched:
                state = self._files[path]
                state.rows = [row for row in state.rows if row.fields[:1] != [name]]
                self._write(path)

    def save_styles(self) -> None:
        """Write every file (the default one always, even when empty, as A1111)."""
        with self._lock:
            paths = list(self._files)
            paths += [Path(s.path) for s in self.styles.values() if s.path and Path(s.path) not in paths]
            for path in paths:
                if self._files.get(path, _File(path)).writable:
                    self._files.setdefault(path, _File(path))
                    self._write(path)

    def _check_writable(self, path: Path) -> None:
        state = self._files.get(path)
        if state is not None and not state.writable:
            raise StyleError(
                f"{path} could not be read completely, so it is not overwritten; fix it first "
                f"({'; '.join(e for e in self.errors if e.startswith(str(path)))})"
            )

    def _render(self, path: Path) -> str:
        state = self._files[path]
        minimal = io.StringIO(newline="")
        plain = csv.writer(minimal)
        # csv would drop the leading spaces of an unquoted field on reading (skipinitialspace); quote those rows.
        quoted = csv.writer(minimal, quoting=csv.QUOTE_ALL)
        plain.writerow(state.header)
        written: set[str] = set()
        extras = len(state.header) - len(FIELDS)

        def emit(fields: list[str]) -> None:
            needs_quotes = any(cell[:1].isspace() for cell in fields)
            (quoted if needs_quotes else plain).writerow(fields)

        for row in state.rows:
            if row.name is None:
                emit(row.fields)
                continue
            style = self.styles.get(row.name)
            if style is None or style.path != str(path) or row.name in written:
                continue  # deleted
            written.add(row.name)
            emit([style.name, style.prompt, style.negative_prompt, *row.fields[len(FIELDS) :]])
        for style in self.styles.values():
            if style.path == str(path) and style.name not in written:
                written.add(style.name)
                new_row = _Row([style.name, style.prompt, style.negative_prompt, *[""] * extras], style.name)
                state.rows.append(new_row)
                emit(new_row.fields)
        return minimal.getvalue()

    def _write(self, path: Path) -> None:
        """Atomic write (temporary file + rename) with the previous file kept as `<file>.bak`."""
        data = ("\ufeff" + self._render(path)).encode("utf-8")
        try:
            if path.exists() and path.read_bytes() == data:
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as fp:
                    fp.write(data)
                    fp.flush()
                    os.fsync(fp.fileno())
                if path.exists():
                    shutil.copy2(path, path.with_name(path.name + ".bak"))
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:
            raise StyleError(f"Could not save styles to {path}: {e.strerror or e}") from e
        self._snapshot[path] = _stat_key(path)


# --- pasting infotext (A1111's `infotext_styles` setting) ----------------------------------------

INFOTEXT_STYLES_MODES = ("Apply if any", "Apply", "Discard", "Ignore")
# Infotexts older than this wrote hires prompts without styles (A1111 checks the same version).
_HIRES_STYLES_VERSION = (1, 8, 0, 1, 139)


def extract_infotext_styles(res: dict[str, Any], db: StyleDatabase, mode: str = "Apply if any") -> dict[str, Any]:
    """Remove known styles from the prompts of a parsed infotext, as A1111 does when pasting; updates `res`.

    `mode` is the `infotext_styles` setting: "Ignore" leaves the prompts alone; otherwise the styles
    found are removed from "Prompt"/"Negative prompt" and, for "Apply" (always) or "Apply if any"
    (when some were found), listed under "Styles array". Hires prompts must carry the same styles,
    or nothing is removed; an empty hires prompt means "same as the prompt".
    """
    from modules.infotext import parse_version

    if mode not in INFOTEXT_STYLES_MODES:
        raise StyleError(f"infotext_styles must be one of {', '.join(INFOTEXT_STYLES_MODES)}, not {mode!r}")
    if mode == "Ignore":
        return res
    prompt, negative = str(res.get("Prompt", "")), str(res.get("Negative prompt", ""))
    found, prompt_left, negative_left = db.extract_styles_from_prompt(prompt, negative)
    version = parse_version(res.get("Version"))
    has_hires = bool(res.get("Hires prompt") or res.get("Hires negative prompt"))
    if has_hires and (version is None or version > _HIRES_STYLES_VERSION):
        hr_prompt = str(res.get("Hires prompt") or prompt)
        hr_negative = str(res.get("Hires negative prompt") or negative)
        hr_found, hr_prompt_left, hr_negative_left = db.extract_styles_from_prompt(hr_prompt, hr_negative)
        if hr_found != found:
            return res
        res["Hires prompt"] = "" if hr_prompt_left == prompt_left else hr_prompt_left
        res["Hires negative prompt"] = "" if hr_negative_left == negative_left else hr_negative_left
    res["Prompt"], res["Negative prompt"] = prompt_left, negative_left
    if mode == "Apply" or (mode == "Apply if any" and found):
        res["Styles array"] = found
    return res
