"""A1111 `[token]` filename patterns (`samples_filename_pattern`, `directories_filename_pattern`) and sanitising."""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import re
import string
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from modules.infotext import default_schedule_label, schedule_label

log = logging.getLogger(__name__)

INVALID_FILENAME_CHARS = '#<>:"/\\|?*\n\r\t'
INVALID_FILENAME_PREFIX = " "
INVALID_FILENAME_POSTFIX = " ."
DEFAULT_MAX_PART_BYTES = 128  # A1111's --filenames-max-length (A1111 counts characters; we count UTF-8 bytes)
DEFAULT_TIME_FORMAT = "%Y%m%d%H%M%S"
WINDOWS_RESERVED_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"COM{i}" for i in range(1, 10)}
    | {f"LPT{i}" for i in range(1, 10)}
)

_NON_LETTERS = re.compile("[\\s" + re.escape(string.punctuation) + "]+")
_TOKEN = re.compile(r"\[([^\[\]]+)\]")
_TOKEN_ARGS = re.compile(r"<([^>]*)>")


class _Skip:
    """Token result meaning: output nothing and also drop the literal text just before the token."""

    def __repr__(self) -> str:
        return "NOTHING_AND_SKIP_PREVIOUS_TEXT"


NOTHING_AND_SKIP_PREVIOUS_TEXT: Any = _Skip()


def truncate_utf8(text: str, max_bytes: int) -> str:
    """Longest prefix of `text` whose UTF-8 encoding fits in `max_bytes`, never splitting a character."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[: max(0, max_bytes)].decode("utf-8", errors="ignore")


def sanitize_filename_part(
    text: str | None,
    replace_spaces: bool = True,
    *,
    max_bytes: int = DEFAULT_MAX_PART_BYTES,
    unix_only: bool = False,
) -> str | None:
    """Make one substituted value safe inside a file name, with A1111's rules.

    Characters `# < > : " / \\ | ? *`, newline, CR and tab become `_` (only `/` with `unix_only`, the
    `--unix-filenames-sanitization` flag); leading spaces and trailing spaces/dots are stripped and the
    value is capped at `max_bytes` UTF-8 bytes (A1111 cut at 128 characters, which with CJK text
    exceeds the 255-byte file name limit of most filesystems).
    """
    if text is None:
        return None
    if replace_spaces:
        text = text.replace(" ", "_")
    invalid = "/" if unix_only else INVALID_FILENAME_CHARS
    text = text.translate({ord(c): "_" for c in invalid})
    text = truncate_utf8(text.lstrip(INVALID_FILENAME_PREFIX), max_bytes)
    return text.rstrip(INVALID_FILENAME_POSTFIX)


def avoid_reserved_name(name: str) -> str:
    """Prefix `_` to names Windows refuses (CON, NUL, COM1, `aux.png`...); other names are unchanged."""
    stem = name.split(".", 1)[0].rstrip(" ")
    return f"_{name}" if stem.upper() in WINDOWS_RESERVED_NAMES else name


def _scheduler_text(sampler_name: str, scheduler: str) -> str:
    """Schedule label for file names: "Automatic" resolves to the sampler's default schedule.

    A1111 applied `str.capitalize()` here, which mangles labels ("SGM Uniform" -> "Sgm uniform"); we
    map internal names to their labels instead.
    """
    if scheduler == "Automatic":
        return default_schedule_label(sampler_name) or "Automatic"
    return schedule_label(scheduler) or scheduler


@dataclass
class FilenameContext:
    """Everything a filename pattern can refer to; built by the caller, no globals are read."""

    seed: int | None = None
    all_seeds: Sequence[int] = ()
    prompt: str | None = None
    negative_prompt: str | None = None
    styles: Sequence[str] = ()
    style_prompts: Sequence[str] = ()  # texts of the selected styles, for [prompt_no_styles]
    steps: int | None = None
    cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    sampler_name: str | None = None
    scheduler: str | None = None
    model_name: str | None = None
    model_hash: str | None = None
    denoising_strength: float | None = None
    clip_skip: int | None = 1
    batch_size: int = 1
    batch_index: int = 0
    n_iter: int = 1
    iteration: int = 0
    job_timestamp: str | None = None
    user: str | None = None
    vae_name: str | None = None  # file name of the loaded external VAE, None when none is loaded
    basename: str = ""
    image: Any = None  # PIL image, for [width], [height], [image_hash]
    zip: bool = False
    now: _dt.datetime | None = None  # fixed "now" for tests; None means the current time
    extra: dict[str, Any] = field(default_factory=dict)


class FilenameGenerator:
    """Expand `[token]` / `[token<arg>...]` patterns from a FilenameContext, as A1111's FilenameGenerator.

    Unknown tokens, and tokens whose value is unavailable, stay in the text literally (with their
    arguments; A1111 dropped the arguments). Every substituted value is sanitised (A1111 left some,
    e.g. `[user]`, raw, letting a `/` create directories); literal pattern text is kept as written.
    """

    def __init__(
        self,
        context: FilenameContext,
        *,
        max_prompt_words: int = 8,
        max_part_bytes: int = DEFAULT_MAX_PART_BYTES,
        unix_sanitization: bool = False,
    ) -> None:
        self.context = context
        self.max_prompt_words = max_prompt_words
        self.max_part_bytes = max_part_bytes
        self.unix_sanitization = unix_sanitization
        self.replacements: dict[str, Callable[..., Any]] = {
            "basename": lambda: context.basename or "img",
            "seed": lambda: context.seed if context.seed is not None else "",
            "seed_first": self._seed_first,
            "seed_last": self._seed_last,
            "steps": lambda: context.steps,
            "cfg": lambda: context.cfg_scale,
            "width": lambda: context.image.width if context.image is not None else context.width,
            "height": lambda: context.image.height if context.image is not None else context.height,
            "styles": lambda: ", ".join(s for s in context.styles if s != "None") or "None",
            "sampler": lambda: context.sampler_name,
            "sampler_scheduler": lambda: self._sampler_scheduler(True),
            "scheduler": lambda: self._sampler_scheduler(False),
            "model_hash": lambda: context.model_hash,
            "model_name": lambda: context.model_name,
            "date": lambda: self._now().strftime("%Y-%m-%d"),
            "datetime": self._datetime,
            "job_timestamp": lambda: context.job_timestamp or self._now().strftime(DEFAULT_TIME_FORMAT),
            "prompt_hash": lambda *a: self._hash(context.prompt, *a),
            "negative_prompt_hash": lambda *a: self._hash(context.negative_prompt, *a),
            "full_prompt_hash": lambda *a: self._hash(f"{context.prompt or ''} {context.negative_prompt or ''}", *a),
            "prompt": lambda: self._sanitize(context.prompt, replace_spaces=True),
            "prompt_no_styles": self._prompt_no_styles,
            "prompt_spaces": lambda: context.prompt,
            "prompt_words": self._prompt_words,
            # Not an A1111 token (A1111 leaves it literal); offered because users ask for it.
            "negative_prompt": lambda: self._sanitize(context.negative_prompt, replace_spaces=True),
            "batch_number": self._batch_number,
            "batch_size": lambda: context.batch_size,
            "generation_number": self._generation_number,
            "hasprompt": self._hasprompt,
            "clip_skip": lambda: context.clip_skip,
            "denoising": lambda: context.denoising_strength or NOTHING_AND_SKIP_PREVIOUS_TEXT,
            "user": lambda: context.user,
            "vae_filename": self._vae_filename,
            "none": lambda: "",
            "image_hash": self._image_hash,
        }

    # --- token implementations ----------------------------------------------------------------
    def _now(self) -> _dt.datetime:
        return self.context.now or _dt.datetime.now()

    def _sanitize(self, text: Any, replace_spaces: bool = False) -> str | None:
        if text is None:
            return None
        return sanitize_filename_part(
            str(text), replace_spaces, max_bytes=self.max_part_bytes, unix_only=self.unix_sanitization
        )

    def _seed_first(self) -> Any:
        c = self.context
        return c.seed if c.batch_size == 1 or not c.all_seeds else c.all_seeds[0]

    def _seed_last(self) -> Any:
        c = self.context
        if c.batch_size == 1:
            return NOTHING_AND_SKIP_PREVIOUS_TEXT
        return c.all_seeds[-1] if c.all_seeds else c.seed

    def _sampler_scheduler(self, with_sampler: bool) -> Any:
        c = self.context
        if c.sampler_name is None or c.scheduler is None:
            return NOTHING_AND_SKIP_PREVIOUS_TEXT
        schedule = _scheduler_text(c.sampler_name, c.scheduler)
        return f"{c.sampler_name} {schedule}" if with_sampler else schedule

    def _datetime(self, *args: str) -> str:
        time_format = args[0] if args and args[0] else DEFAULT_TIME_FORMAT
        zone = None
        if len(args) > 1 and args[1]:
            try:
                zone = zoneinfo.ZoneInfo(args[1])
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                log.warning("Unknown time zone %r in filename pattern; using local time", args[1])
        moment = self._now().astimezone(zone)
        try:
            return moment.strftime(time_format)
        except (ValueError, TypeError):
            return moment.strftime(DEFAULT_TIME_FORMAT)

    @staticmethod
    def _hash(text: str | None, *args: str) -> str | None:
        if text is None:
            return None
        length = int(args[0]) if args and args[0] else 8
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]

    def _prompt_no_styles(self) -> str | None:
        prompt = self.context.prompt
        if prompt is None:
            return None
        for style in self.context.style_prompts:
            if not style:
                continue
            for part in style.split("{prompt}"):
                if part:
                    prompt = prompt.replace(part, "").replace(", ,", ",").strip().strip(",")
            prompt = prompt.strip().strip(",").strip()
        return prompt

    def _prompt_words(self) -> str:
        words = [w for w in _NON_LETTERS.split(self.context.prompt or "") if w]
        return " ".join(words[: self.max_prompt_words] or ["empty"])

    def _batch_number(self) -> Any:
        c = self.context
        return NOTHING_AND_SKIP_PREVIOUS_TEXT if c.batch_size == 1 or c.zip else c.batch_index + 1

    def _generation_number(self) -> Any:
        c = self.context
        if (c.n_iter == 1 and c.batch_size == 1) or c.zip:
            return NOTHING_AND_SKIP_PREVIOUS_TEXT
        return c.iteration * c.batch_size + c.batch_index + 1

    def _hasprompt(self, *args: str) -> str | None:
        """`[hasprompt<word|default><word2>...]`: each word found in the prompt, else its default."""
        if self.context.prompt is None:
            return None
        lower = self.context.prompt.lower()
        out = ""
        for arg in args:
            if not arg:
                continue
            expected, _, default = arg.partition("|")
            expected = expected.lower()
            out += expected if expected in lower else default
        return self._sanitize(out, replace_spaces=True)

    def _vae_filename(self) -> str:
        name = self.context.vae_name
        if name is None:
            return "NoneType"  # what A1111 writes when no external VAE is loaded
        parts = name.replace("\\", "/").rsplit("/", 1)[-1].split(".")
        return parts[1] if len(parts) > 1 and parts[0] == "" else parts[0]

    def _image_hash(self, *args: str) -> str | None:
        image = self.context.image
        if image is None:
            return None
        length = int(args[0]) if args and args[0] else None
        return hashlib.sha256(image.tobytes()).hexdigest()[:length]

    # --- expansion ----------------------------------------------------------------------------
    def apply(self, pattern: str) -> str:
        """Expand every `[token]` of `pattern`."""
        out: list[str] = []
        pos = 0
        for m in _TOKEN.finditer(pattern):
            literal = pattern[pos : m.start()]
            pos = m.end()
            inner = m.group(1)
            args_start = inner.find("<")
            name = (inner if args_start < 0 else inner[:args_start]).lower()
            args = _TOKEN_ARGS.findall(inner[args_start:]) if args_start >= 0 else []
            value = self._expand(name, args)
            if value is NOTHING_AND_SKIP_PREVIOUS_TEXT:
                continue
            out.append(literal + (f"[{inner}]" if value is None else value))
        out.append(pattern[pos:])
        return "".join(out)

    def _expand(self, name: str, args: list[str]) -> Any:
        func = self.replacements.get(name)
        if func is None:
            return None
        try:
            value = func(*args)
        except Exception as e:  # a broken token must not stop the image from being saved
            log.warning("Error adding [%s] to filename: %s: %s", name, type(e).__name__, e)
            return None
        if value is None or value is NOTHING_AND_SKIP_PREVIOUS_TEXT:
            return value
        return self._sanitize(value)
