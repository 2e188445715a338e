"""Prompt text to text-encoder embeddings as A1111 computes them: 75-token chunks, emphasis, clip skip, embeddings."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from modules import prompt_parser
from modules.errors import WebUIError
from modules.textual_inversion import Embedding, EmbeddingDatabase, EmbeddingIndex

CHUNK_LENGTH = 75  # tokens per chunk between BOS and EOS; the encoder sees 77
EMPHASIS_MODES = ("Original", "No norm", "Ignore", "None")


class ConditioningError(WebUIError, ValueError):
    """Bad conditioning options or a model whose text encoders we cannot drive."""


MAX_WEIGHT = 100.0


@dataclass(frozen=True)
class ConditioningOptions:
    """The settings that shape the embeddings (A1111 setting names in comments)."""

    emphasis: str = "Original"  # emphasis
    clip_skip: int = 1  # CLIP_stop_at_last_layers
    comma_padding_backtrack: int = 20  # comma_padding_backtrack
    sdxl_clip_l_skip: bool = False  # sdxl_clip_l_skip
    add_ti_hashes: bool = True  # textual_inversion_add_hashes_to_infotext
    zero_empty_negative_sdxl: bool = True  # A1111 always zeroes an all-empty SDXL negative prompt
    cache_size: int = 16  # results kept per conditioner (0 disables; A1111: persistent_cond_cache)
    curly_emphasis: bool = False  # nai_curly_emphasis: NovelAI-style {x} = x1.05 (not in A1111; off by default)

    def __post_init__(self) -> None:
        if self.emphasis not in EMPHASIS_MODES:
            raise ConditioningError(f"emphasis must be one of {', '.join(EMPHASIS_MODES)}; got {self.emphasis!r}")
        if not isinstance(self.clip_skip, int) or not 1 <= self.clip_skip <= 12:
            raise ConditioningError(f"clip skip must be a whole number from 1 to 12; got {self.clip_skip!r}")
        if not isinstance(self.comma_padding_backtrack, int) or not 0 <= self.comma_padding_backtrack <= 74:
            raise ConditioningError(
                f"comma padding backtrack must be a whole number from 0 to 74; got {self.comma_padding_backtrack!r}"
            )
        if not isinstance(self.cache_size, int) or self.cache_size < 0:
            raise ConditioningError(f"cache size must be a whole number >= 0; got {self.cache_size!r}")

    @classmethod
    def from_settings(cls, get: Callable[[str, Any], Any]) -> ConditioningOptions:
        """Build from A1111 setting names through `get(name, default)` (e.g. an options store's getter)."""
        return cls(
            emphasis=get("emphasis", "Original"),
            clip_skip=int(get("CLIP_stop_at_last_layers", 1)),
            comma_padding_backtrack=int(get("comma_padding_backtrack", 20)),
            sdxl_clip_l_skip=bool(get("sdxl_clip_l_skip", False)),
            add_ti_hashes=bool(get("textual_inversion_add_hashes_to_infotext", True)),
            cache_size=16 if get("persistent_cond_cache", True) else 0,
            curly_emphasis=bool(get("nai_curly_emphasis", False)),
        )


@dataclass
class PromptChunk:
    """77 token ids with one weight each; `fixes` are (position after BOS, embedding) insertions."""

    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)
    fixes: list[tuple[int, Embedding]] = field(default_factory=list)


class Chunker:
    """Turns one line of prompt text into 77-token chunks exactly as A1111's `tokenize_line` does."""

    def __init__(
        self,
        tokenizer: Any,
        emphasis: str = "Original",
        comma_padding_backtrack: int = 20,
        embeddings: EmbeddingIndex | None = None,
        curly: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.curly = curly
        self.emphasis = emphasis
        self.backtrack = comma_padding_backtrack
        self.embeddings = embeddings
        self.id_start = tokenizer.bos_token_id
        self.id_end = tokenizer.eos_token_id
        if self.id_start is None or self.id_end is None:
            raise ConditioningError("the tokenizer has no start/end-of-text tokens; it is not a CLIP tokenizer")
        self.comma = tokenizer.get_vocab().get(",</w>")

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        # verbose=False: long prompts are expected here, chunking handles them.
        return self.tokenizer(texts, truncation=False, add_special_tokens=False, verbose=False)["input_ids"]

    def empty_chunk(self) -> PromptChunk:
        return PromptChunk([self.id_start] + [self.id_end] * (CHUNK_LENGTH + 1), [1.0] * (CHUNK_LENGTH + 2))

    def tokenize_line(self, line: str) -> tuple[list[PromptChunk], int]:
        """The chunks of `line` and its token count as the UI shows it (75 per closed chunk + the last one's)."""
        # Emphasis "None" parses nothing: brackets, weights and BREAK are plain text.
        if self.emphasis == "None":
            parsed = [[line, 1.0]]
        else:
            parsed = prompt_parser.parse_prompt_attention(line, curly=self.curly)
        tokenized = self.tokenize([text for text, _ in parsed])
        chunks: list[PromptChunk] = []
        chunk = PromptChunk()
        token_count = 0
        last_comma = -1

        def close_chunk(is_last: bool = False) -> None:
            nonlocal chunk, token_count, last_comma
            token_count += len(chunk.tokens) if is_last else CHUNK_LENGTH
            room = CHUNK_LENGTH - len(chunk.tokens)
            chunk.tokens = [self.id_start] + chunk.tokens + [self.id_end] * room + [self.id_end]
            chunk.multipliers = [1.0] + chunk.multipliers + [1.0] * room + [1.0]
            chunks.append(chunk)
            chunk = PromptChunk()
            last_comma = -1

        for tokens, (text, weight) in zip(tokenized, parsed, strict=True):
            # Only an unscaled BREAK splits; A1111 tokenises a BREAK inside brackets (weight != -1) as text.
            if text == "BREAK" and weight == -1:
                close_chunk()
                continue
            position = 0
            while position < len(tokens):
                token = tokens[position]
                if token == self.comma:
                    last_comma = len(chunk.tokens)
                elif (
                    self.backtrack
                    and len(chunk.tokens) == CHUNK_LENGTH
                    and last_comma != -1
                    and len(chunk.tokens) - last_comma <= self.backtrack
                ):
                    # The chunk is full: move everything after its last comma to the next chunk.
                    cut = last_comma + 1
                    moved_tokens, moved_mults = chunk.tokens[cut:], chunk.multipliers[cut:]
                    moved_fixes = [(pos - cut, emb) for pos, emb in chunk.fixes if pos >= cut]
                    chunk.tokens, chunk.multipliers = chunk.tokens[:cut], chunk.multipliers[:cut]
                    # A1111 leaves such fixes in the old chunk (writing vectors over its padding); we move them.
                    chunk.fixes = [(pos, emb) for pos, emb in chunk.fixes if pos < cut]
                    close_chunk()
                    chunk.tokens, chunk.multipliers, chunk.fixes = moved_tokens, moved_mults, moved_fixes
                if len(chunk.tokens) == CHUNK_LENGTH:
                    close_chunk()
                found, name_length = (
                    self.embeddings.find_embedding_at_position(tokens, position) if self.embeddings else (None, None)
                )
                if found is None:
                    chunk.tokens.append(token)
                    chunk.multipliers.append(weight)
                    position += 1
                    continue
                if len(chunk.tokens) + found.vectors > CHUNK_LENGTH:
                    close_chunk()
                chunk.fixes.append((len(chunk.tokens), found))
                # Placeholder id 0; the vectors replace these positions' token embeddings at encode time.
                chunk.tokens += [0] * found.vectors
                chunk.multipliers += [weight] * found.vectors
                position += name_length or 1
        if chunk.tokens or not chunks:
            close_chunk(is_last=True)
        return chunks, token_count

    def token_count(self, line: str) -> int:
        return self.tokenize_line(line)[1]


def target_token_count(token_count: int) -> int:
    """The limit the UI shows next to the count: the next multiple of 75 (at least 75)."""
    return -(-max(token_count, 1) // CHUNK_LENGTH) * CHUNK_LENGTH


@dataclass
class _Encoder:
    """One text encoder with how A1111 reads it."""

    key: str  # embedding part name: "clip_l", "clip_g", or "" for single-encoder models
    tokenizer: Any
    model: Any
    id_pad: int
    layer: str  # "sd1" (clip skip + final norm), "last", "sdxl_l" (hidden, no norm), "penultimate"
    pooled: bool = False
    chunker: Chunker | None = None

    @property
    def width(self) -> int:
        return int(self.model.config.hidden_size)


def _token_embedding(model: Any) -> torch.nn.Module:
    """The token-id embedding layer of a CLIP text model (flat in transformers 5, under .text_model before)."""
    inner = getattr(model, "text_model", model)
    return inner.embeddings.token_embedding


def _final_layer_norm(model: Any) -> torch.nn.Module:
    return getattr(model, "text_model", model).final_layer_norm


def _family(variant: str) -> str:
    if variant.startswith("sdxl"):
        return "sdxl"
    if variant.startswith("sd2"):
        return "sd2"
    if variant.startswith("sd1"):
        return "sd1"
    raise ConditioningError(f"no text-encoder handling for model variant {variant!r} (expected sd1*, sd2*, sdxl*)")


class TextConditioner:
    """`get_learned_conditioning(texts)` for one loaded model, A1111 style.

    SD1/SD2 return a tensor [B, 77*k, D]; SDXL returns {"crossattn": [B, 77*k, 2048 (refiner 1280)], "vector":
    pooled [B, 1280]}, the pooled vector being the projected output of the bigG encoder on the first chunk.
    Results are cached per batch of texts: the same texts give the same tensor object back (do not modify it).
    """

    def __init__(
        self,
        pipe: Any,
        variant: str,
        options: ConditioningOptions | None = None,
        embeddings: EmbeddingDatabase | None = None,
    ) -> None:
        self.variant = variant
        self.family = _family(variant)
        self.options = options or ConditioningOptions()
        self.embedding_db = embeddings
        self.encoders = self._build_encoders(pipe)
        self.extra_generation_params: dict[str, str] = {}
        self.used_embeddings: dict[str, Embedding] = {}
        # Whoever changes text-encoder weights in place (LoRA) sets this to a value naming the change.
        self.cache_salt: Hashable = None
        self._index: EmbeddingIndex | None = None
        self._cache: OrderedDict[Hashable, tuple[Any, dict[str, Embedding]]] = OrderedDict()
        self._lock = threading.RLock()
        self._refresh_chunkers()

    @classmethod
    def from_loaded(
        cls, loaded: Any, options: ConditioningOptions | None = None, embeddings: EmbeddingDatabase | None = None
    ) -> TextConditioner:
        """From a `model_loader.LoadedModel`."""
        return cls(loaded.pipe, loaded.variant, options, embeddings)

    def _build_encoders(self, pipe: Any) -> list[_Encoder]:
        def part(name: str) -> tuple[Any, Any]:
            return getattr(pipe, f"tokenizer{name}", None), getattr(pipe, f"text_encoder{name}", None)

        tok, te = part("")
        tok2, te2 = part("_2")
        encoders: list[_Encoder] = []
        if self.family == "sdxl":
            if te is not None and tok is not None:  # the refiner has only the bigG encoder
                encoders.append(_Encoder("clip_l", tok, te, tok.eos_token_id, "sdxl_l"))
            if te2 is None or tok2 is None:
                raise ConditioningError(f"{self.variant} model has no second text encoder/tokenizer (OpenCLIP bigG)")
            # OpenCLIP pads with id 0 ("!") after the first end-of-text token.
            encoders.append(_Encoder("clip_g", tok2, te2, 0, "penultimate", pooled=True))
        elif te is None or tok is None:
            raise ConditioningError(f"{self.variant} model has no text encoder/tokenizer")
        elif self.family == "sd2":
            # diffusers' SD2 encoder already stops at OpenCLIP's penultimate layer (23 of 24) and applies the final
            # norm, which is exactly A1111's "penultimate" layer; A1111 ignores clip skip for SD2.
            encoders.append(_Encoder("", tok, te, 0, "last"))
        else:
            encoders.append(_Encoder("", tok, te, tok.eos_token_id, "sd1"))
        return encoders

    @property
    def embedding_index(self) -> EmbeddingIndex | None:
        """Embeddings usable with this model (`word_embeddings`) and those skipped with the reason (`skipped`)."""
        return self.refresh_embeddings()

    @property
    def widths(self) -> tuple[tuple[str, int], ...]:
        return tuple((e.key, e.width) for e in self.encoders)

    @property
    def expected_embedding_width(self) -> int:
        return sum(w for _, w in self.widths)

    # ----- options, embeddings, cache -------------------------------------------------------------------------

    def set_options(self, options: ConditioningOptions) -> None:
        with self._lock:
            if options != self.options:
                self.options = options
                self._cache.clear()
                self._refresh_chunkers()

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def _refresh_chunkers(self) -> None:
        for enc in self.encoders:
            enc.chunker = Chunker(
                enc.tokenizer, self.options.emphasis, self.options.comma_padding_backtrack, self._index,
                curly=self.options.curly_emphasis,
            )

    def refresh_embeddings(self, force: bool = False) -> EmbeddingIndex | None:
        """Rescan the embeddings folder if it changed and rebuild the name index for this model if needed."""
        db = self.embedding_db
        if db is None:
            return None
        with self._lock:
            db.refresh(force=force)
            if self._index is None or self._index.version != db.version:
                first = self.encoders[0].chunker or Chunker(self.encoders[0].tokenizer)
                self._index = db.build_index(self.widths, lambda name: first.tokenize([name])[0])
                self._refresh_chunkers()
            return self._index

    # ----- encoding ------------------------------------------------------------------------------------------

    def tokenize_line(self, line: str) -> tuple[list[PromptChunk], int]:
        """Chunks and token count for one line with the first encoder's tokenizer (what the UI counter uses)."""
        self.refresh_embeddings()
        return self.encoders[0].chunker.tokenize_line(line)  # type: ignore[union-attr]

    def get_prompt_lengths(self, text: str) -> tuple[int, int]:
        count = self.tokenize_line(text)[1]
        return count, target_token_count(count)

    def get_learned_conditioning(self, texts: Sequence[str]) -> Any:
        texts = list(texts) if not isinstance(texts, list) else texts
        if not texts:
            raise ConditioningError("no prompts to encode")
        negative = bool(getattr(texts, "is_negative_prompt", False))
        with self._lock:
            index = self.refresh_embeddings()
            key = (tuple(texts), negative, self.options, index.version if index else None, self.cache_salt)
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                result, used = hit
            else:
                result, used = self._encode(texts, negative)
                if self.options.cache_size:
                    self._cache[key] = (result, used)
                    while len(self._cache) > self.options.cache_size:
                        self._cache.popitem(last=False)
            self._record_infotext(texts, used)
            return result

    def _record_infotext(self, texts: list[str], used: dict[str, Embedding]) -> None:
        self.used_embeddings.update(used)
        if used and self.options.add_ti_hashes and self.embedding_db is not None:
            value = self.embedding_db.ti_hashes(self.used_embeddings.values())
            if value:
                self.extra_generation_params["TI hashes"] = value
        if self.options.emphasis != "Original" and any("(" in t or "[" in t for t in texts):
            self.extra_generation_params["Emphasis"] = self.options.emphasis

    def pop_extra_generation_params(self) -> dict[str, str]:
        """Infotext entries gathered since the last call (`TI hashes`, `Emphasis`), then forget them."""
        with self._lock:
            params, self.extra_generation_params = self.extra_generation_params, {}
            self.used_embeddings = {}
            return params

    def _encode(self, texts: list[str], negative: bool) -> tuple[Any, dict[str, Embedding]]:
        used: dict[str, Embedding] = {}
        outputs: list[torch.Tensor] = []
        pooled: torch.Tensor | None = None
        chunk_counts = set()
        for enc in self.encoders:
            per_text = [enc.chunker.tokenize_line(t)[0] for t in texts]  # type: ignore[union-attr]
            n_chunks = max(len(c) for c in per_text)
            chunk_counts.add(n_chunks)
            zs = []
            for i in range(n_chunks):
                batch = [c[i] if i < len(c) else enc.chunker.empty_chunk() for c in per_text]  # type: ignore[union-attr]
                for chunk in batch:
                    used.update((emb.name, emb) for _, emb in chunk.fixes)
                z, p = self._encode_chunk(enc, batch)
                if i == 0 and p is not None:
                    pooled = p
                zs.append(z)
            outputs.append(torch.cat(zs, dim=1))
        if len(chunk_counts) != 1:
            raise ConditioningError(f"the two text encoders split the prompt differently ({sorted(chunk_counts)})")
        if self.family != "sdxl":
            return outputs[0], used
        cond = {"crossattn": torch.cat(outputs, dim=-1), "vector": pooled}
        if negative and self.options.zero_empty_negative_sdxl and all(t == "" for t in texts):
            cond = {k: torch.zeros_like(v) for k, v in cond.items()}
        return cond, used

    def _encode_chunk(self, enc: _Encoder, batch: list[PromptChunk]) -> tuple[torch.Tensor, torch.Tensor | None]:
        model = enc.model
        device = model.device
        tokens = torch.tensor([c.tokens for c in batch], dtype=torch.long, device=device)
        chunker = enc.chunker
        if enc.id_pad != chunker.id_end:  # type: ignore[union-attr]
            for row, chunk in enumerate(batch):
                first_end = chunk.tokens.index(chunker.id_end)  # type: ignore[union-attr]
                tokens[row, first_end + 1 :] = enc.id_pad
        fixes = [c.fixes for c in batch]
        handle = None
        if any(fixes):
            handle = _token_embedding(model).register_forward_hook(self._fixes_hook(enc, fixes))
        want_hidden = enc.layer != "last" and not (enc.layer == "sd1" and self.options.clip_skip == 1)
        try:
            with torch.no_grad():
                out = model(input_ids=tokens, output_hidden_states=want_hidden)
        finally:
            if handle is not None:
                handle.remove()
        z = self._pick_layer(enc, out)
        pooled = out.text_embeds if enc.pooled else None
        if self.options.emphasis in ("Original", "No norm"):
            z = self._apply_emphasis(z, batch)
        return z, pooled

    def _pick_layer(self, enc: _Encoder, out: Any) -> torch.Tensor:
        skip = self.options.clip_skip
        if enc.layer == "last":
            return out.last_hidden_state
        hidden = out.hidden_states
        if enc.layer == "penultimate":
            return hidden[-2]
        if enc.layer == "sdxl_l":
            # SDXL's config reads CLIP-L's penultimate layer without the final norm; `sdxl_clip_l_skip` makes the
            # clip skip setting choose the layer instead (1 = last layer output, still without the norm).
            return hidden[-skip] if self.options.sdxl_clip_l_skip else hidden[-2]
        if skip == 1:
            return out.last_hidden_state
        if skip > len(hidden):
            raise ConditioningError(f"clip skip {skip} is more than this text encoder's {len(hidden) - 1} layers")
        with torch.no_grad():
            return _final_layer_norm(enc.model)(hidden[-skip])

    def _fixes_hook(self, enc: _Encoder, fixes: list[list[tuple[int, Embedding]]]) -> Callable:
        widths = self.widths

        def hook(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
            output = output.clone()
            length = output.shape[1]
            for row, row_fixes in enumerate(fixes):
                for offset, emb in row_fixes:
                    vec = emb.vectors_for(enc.key, widths).to(device=output.device, dtype=output.dtype)
                    n = min(length - offset - 1, vec.shape[0])
                    output[row, offset + 1 : offset + 1 + n] = vec[:n]
            return output

        return hook

    def _apply_emphasis(self, z: torch.Tensor, batch: list[PromptChunk]) -> torch.Tensor:
        weights = torch.tensor([c.multipliers for c in batch], dtype=torch.float32, device=z.device)
        if all(w == 1.0 for c in batch for w in c.multipliers):
            return z
        # A1111 lets weights overflow (5,000 nested brackets give 1.1**5000 = inf) and then renders a NaN
        # image. Weights beyond +-MAX_WEIGHT make no visual sense; clamping keeps the result finite.
        weights = weights.nan_to_num(nan=1.0).clamp(-MAX_WEIGHT, MAX_WEIGHT)
        zf = z.float()
        weighted = zf * weights.unsqueeze(-1)
        if self.options.emphasis == "Original":
            # Restore the mean over the whole batch of this chunk, as A1111 does.
            weighted = weighted * (zf.mean() / weighted.mean())
        return weighted.to(z.dtype)


def with_options(conditioner: TextConditioner, **changes: Any) -> None:
    """Change some options of a conditioner (clears its cache if anything changed)."""
    conditioner.set_options(replace(conditioner.options, **changes))
