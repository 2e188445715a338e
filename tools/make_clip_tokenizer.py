"""Build the CLIP BPE tokenizer files (vocab.json, merges.txt) offline from open_clip's bpe_simple_vocab_16e6.txt.gz.

Every Stable Diffusion text encoder (SD1 CLIP-L, SD2 OpenCLIP-H, SDXL CLIP-L + bigG) uses the same 49,408-token
byte-level BPE vocabulary. The hub ships it as ``vocab.json`` + ``merges.txt``; the MIT-licensed ``open_clip_torch``
wheel ships the original merge list as ``open_clip/bpe_simple_vocab_16e6.txt.gz``. This script derives the former
from the latter, so the app never needs the network to build a tokenizer.

Get the source file (about 1.5 MB, no dependencies installed)::

    pip download open_clip_torch==3.3.0 --no-deps -d /tmp/oc

Then run (the argument may be the wheel itself or the extracted ``.txt.gz``)::

    venv/bin/python tools/make_clip_tokenizer.py /tmp/oc/open_clip_torch-3.3.0-py3-none-any.whl

Derivation (the scheme CLIP's own tokenizer uses):

* ids 0..255: the 256 printable stand-ins for the raw bytes (the GPT-2 byte-to-unicode table);
* ids 256..511: the same 256 symbols with the end-of-word marker ``</w>`` appended;
* ids 512..49405: the concatenation of each merge, for merge lines ``[1:48895]`` of the gz (line 0 is a header);
* ids 49406, 49407: ``<|startoftext|>`` and ``<|endoftext|>``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
import zipfile
from pathlib import Path

GZ_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
# sha256 of the gz in open_clip_torch 3.3.0 (identical to the one in openai/CLIP).
KNOWN_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
# CLIP keeps 49152 - 256 - 2 merges, so the vocabulary ends up with exactly 49408 entries.
NUM_MERGES = 49152 - 256 - 2
VOCAB_SIZE = 49408
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "configs" / "clip-tokenizer"


class SourceError(ValueError):
    """The given file is not a usable copy of bpe_simple_vocab_16e6.txt.gz."""


def byte_symbols() -> list[str]:
    """Return the 256 unicode stand-ins for bytes 0..255, in CLIP's vocabulary order.

    Printable Latin-1 bytes map to themselves and come first (in byte order); the remaining bytes (control
    characters, space, soft hyphen...) are mapped to code points 256, 257, ... and come after them. The BPE
    then never has to handle whitespace or control characters directly.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    printable_set = set(printable)
    order = list(printable)
    symbols = [chr(b) for b in printable]
    extra = 0
    for b in range(256):
        if b not in printable_set:
            order.append(b)
            symbols.append(chr(256 + extra))
            extra += 1
    assert sorted(order) == list(range(256))
    return symbols


def read_gz_bytes(source: Path) -> bytes:
    """Return the raw gz bytes, taken from a wheel (zip) or a plain .txt.gz file."""
    if not source.is_file():
        raise SourceError(f"{source} is not a file")
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            try:
                return zf.read(GZ_MEMBER)
            except KeyError:
                raise SourceError(f"{source} is a zip but holds no {GZ_MEMBER}") from None
    return source.read_bytes()


def read_merges(gz_bytes: bytes) -> list[tuple[str, str]]:
    """Decode the gz and return the NUM_MERGES merge pairs CLIP uses."""
    try:
        text = gzip.decompress(gz_bytes).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot decode the BPE gz: {exc}") from exc
    lines = text.split("\n")
    if len(lines) < NUM_MERGES + 1 or not lines[0].startswith('"bpe_simple_vocab_16e6.txt#version'):
        raise SourceError("the gz does not look like bpe_simple_vocab_16e6.txt (wrong header or too few lines)")
    merges = []
    for number, line in enumerate(lines[1 : NUM_MERGES + 1], start=2):
        parts = line.split()
        if len(parts) != 2:
            raise SourceError(f"line {number} of the BPE file is not a merge pair: {line!r}")
        merges.append((parts[0], parts[1]))
    return merges


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Return token -> id for the full 49408-entry CLIP vocabulary."""
    symbols = byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols), *(a + b for a, b in merges), BOS, EOS]
    vocab = {token: i for i, token in enumerate(tokens)}
    if len(vocab) != VOCAB_SIZE or len(tokens) != VOCAB_SIZE:
        raise SourceError(f"expected {VOCAB_SIZE} unique tokens, got {len(vocab)} unique of {len(tokens)}")
    return vocab


def write_tokenizer_files(gz_bytes: bytes, out_dir: Path) -> tuple[Path, Path]:
    """Write vocab.json and merges.txt (transformers' CLIPTokenizer layout) into out_dir."""
    merges = read_merges(gz_bytes)
    vocab = build_vocab(merges)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_path = out_dir / "vocab.json"
    merges_path = out_dir / "merges.txt"
    # Insertion order is id order; ensure_ascii=False keeps the byte stand-ins readable and the file small.
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return vocab_path, merges_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="open_clip_torch-3.3.0 wheel or bpe_simple_vocab_16e6.txt.gz")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument(
        "--allow-unknown-hash", action="store_true", help="accept a gz whose sha256 differs from the known one"
    )
    args = parser.parse_args(argv)
    try:
        gz_bytes = read_gz_bytes(args.source)
        digest = hashlib.sha256(gz_bytes).hexdigest()
        if digest != KNOWN_SHA256 and not args.allow_unknown_hash:
            raise SourceError(f"sha256 {digest} is not the known {KNOWN_SHA256}; pass --allow-unknown-hash to use it")
        paths = write_tokenizer_files(gz_bytes, args.out)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
