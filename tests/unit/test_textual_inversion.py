"""Textual-inversion embeddings: file formats, safe loading, matching in prompts, vectors reaching the encoder."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from modules.conditioning import ConditioningOptions, TextConditioner
from modules.errors import UnsafeFileError
from modules.hashes import HashCache
from modules.prompt_parser import SdConditioning
from modules.textual_inversion import EmbeddingDatabase, EmbeddingError, embedding_from_data, load_embedding_file
from modules.token_counter import count_tokens
from tests.fixtures.tiny_models import build_tiny_components


@pytest.fixture(scope="module")
def sd1() -> dict:
    return build_tiny_components("sd1", seed=5)


@pytest.fixture(scope="module")
def sdxl() -> dict:
    return build_tiny_components("sdxl-base", seed=6)


def vectors(n: int, width: int, seed: int) -> torch.Tensor:
    return torch.randn(n, width, generator=torch.Generator().manual_seed(seed))


def save_a1111_pt(path: Path, vec: torch.Tensor) -> None:
    """The layout A1111's trainer writes."""
    torch.save(
        {
            "string_to_token": {"*": 265},
            "string_to_param": {"*": vec},
            "name": path.stem,
            "step": 1200,
            "sd_checkpoint": "abcdef12",
            "sd_checkpoint_name": "v1-5-pruned",
        },
        path,
    )


def conditioner(components: dict, variant: str, folder: Path, **options) -> TextConditioner:
    keys = ("tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2")
    pipe = SimpleNamespace(**{k: components.get(k) for k in keys})
    db = EmbeddingDatabase(folder, hash_cache=options.pop("hash_cache", None), check_interval=0)
    return TextConditioner(pipe, variant, ConditioningOptions(**options), db)


@contextlib.contextmanager
def token_embeddings_seen(model) -> list[torch.Tensor]:
    """Record what the encoder's transformer receives, minus the position embeddings (i.e. inputs_embeds)."""
    embeddings = getattr(model, "text_model", model).embeddings
    seen: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        seen.append((output - embeddings.position_embedding.weight[: output.shape[1]]).detach().clone())

    handle = embeddings.register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def test_a1111_pt_vectors_reach_the_encoder(sd1: dict, tmp_path: Path) -> None:
    vec = vectors(2, 32, seed=0)
    save_a1111_pt(tmp_path / "myemb.pt", vec)
    cond = conditioner(sd1, "sd1", tmp_path)
    with token_embeddings_seen(sd1["text_encoder"]) as seen:
        z = cond.get_learned_conditioning(["a photo of myemb"])
    # BOS a photo of [v0 v1] EOS...: the two vectors sit at positions 4 and 5, the rest is the usual table lookup.
    torch.testing.assert_close(seen[0][0, 4:6], vec, rtol=0, atol=1e-6)
    table = sd1["text_encoder"].embeddings.token_embedding.weight
    ids = sd1["tokenizer"]("a photo of", add_special_tokens=False).input_ids
    torch.testing.assert_close(seen[0][0, 1:4], table[ids], rtol=0, atol=1e-6)
    eos = sd1["tokenizer"].eos_token_id
    torch.testing.assert_close(seen[0][0, 6:], table[[eos] * 71], rtol=0, atol=1e-6)
    # Without the database the name is ordinary text and the result differs.
    plain = TextConditioner(SimpleNamespace(tokenizer=sd1["tokenizer"], text_encoder=sd1["text_encoder"]), "sd1")
    assert not torch.allclose(z, plain.get_learned_conditioning(["a photo of myemb"]))
    # Nothing stays patched after the call.
    with token_embeddings_seen(sd1["text_encoder"]) as seen:
        cond.encoders[0].model(torch.tensor([[49406] + [0] * 76]))
    torch.testing.assert_close(seen[0][0, 1], table[0], rtol=0, atol=1e-6)
    emb = cond.embedding_index.word_embeddings["myemb"]
    assert (emb.vectors, emb.shape, emb.step, emb.sd_checkpoint_name) == (2, 32, 1200, "v1-5-pruned")


def test_ti_hashes_and_negative_prompts(sd1: dict, tmp_path: Path) -> None:
    save_a1111_pt(tmp_path / "bad,hands.pt", vectors(3, 32, seed=1))
    digest = hashlib.sha256((tmp_path / "bad,hands.pt").read_bytes()).hexdigest()
    cache = HashCache(tmp_path / "cache.json")
    cond = conditioner(sd1, "sd1", tmp_path, hash_cache=cache)
    with token_embeddings_seen(sd1["text_encoder"]) as seen:
        cond.get_learned_conditioning(SdConditioning(["bad,hands, blurry"], is_negative_prompt=True))
    torch.testing.assert_close(seen[0][0, 1:4], vectors(3, 32, seed=1), rtol=0, atol=1e-6)
    # The name loses its comma in infotext, as in A1111.
    assert cond.pop_extra_generation_params() == {"TI hashes": f"badhands: {digest[:12]}"}
    stored = json.loads((tmp_path / "cache.json").read_text())["hashes"]["textual_inversion/bad,hands"]
    assert stored["sha256"] == digest
    cond.get_learned_conditioning(["no embedding here"])
    assert cond.pop_extra_generation_params() == {}


def test_safetensors_bin_and_parameterdict_formats(sd1: dict, tmp_path: Path) -> None:
    save_file({"emb_params": vectors(1, 32, seed=2)}, str(tmp_path / "sfemb.safetensors"))
    torch.save({"<concept>": vectors(1, 32, seed=3)[0]}, tmp_path / "concept.bin")  # diffusers learned_embeds.bin
    legacy = torch.nn.ParameterDict({"*": torch.nn.Parameter(vectors(4, 32, seed=4))})
    torch.save({"string_to_token": {"*": 265}, "string_to_param": legacy, "name": "old"}, tmp_path / "oldti.pt")
    (tmp_path / "sub").mkdir()
    save_file({"emb_params": vectors(2, 32, seed=5)}, str(tmp_path / "sub" / "nested.safetensors"))
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "preview.png").write_bytes(b"\x89PNG")
    cond = conditioner(sd1, "sd1", tmp_path)
    index = cond.embedding_index
    assert sorted(index.word_embeddings) == ["concept", "nested", "oldti", "sfemb"]
    assert {k: e.vectors for k, e in index.word_embeddings.items()} == {
        "sfemb": 1,
        "concept": 1,
        "oldti": 4,
        "nested": 2,
    }
    with token_embeddings_seen(sd1["text_encoder"]) as seen:
        cond.get_learned_conditioning(["sfemb concept oldti nested"])
    got = seen[0][0]
    torch.testing.assert_close(got[1], vectors(1, 32, seed=2)[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(got[2], vectors(1, 32, seed=3)[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(got[3:7], vectors(4, 32, seed=4), rtol=0, atol=1e-6)
    torch.testing.assert_close(got[7:9], vectors(2, 32, seed=5), rtol=0, atol=1e-6)
    assert count_tokens(cond, "sfemb concept oldti nested", 20) == (8, 75)


def test_sdxl_clip_l_clip_g_embedding(sdxl: dict, tmp_path: Path) -> None:
    clip_l, clip_g = vectors(2, 32, seed=6), vectors(2, 64, seed=7)
    save_file({"clip_l": clip_l, "clip_g": clip_g}, str(tmp_path / "xlemb.safetensors"))
    save_a1111_pt(tmp_path / "sd1only.pt", vectors(1, 32, seed=8))
    cond = conditioner(sdxl, "sdxl-base", tmp_path)
    with token_embeddings_seen(sdxl["text_encoder"]) as seen_l, token_embeddings_seen(sdxl["text_encoder_2"]) as seen_g:
        out = cond.get_learned_conditioning(["a xlemb"])
    torch.testing.assert_close(seen_l[0][0, 2:4], clip_l, rtol=0, atol=1e-6)
    torch.testing.assert_close(seen_g[0][0, 2:4], clip_g, rtol=0, atol=1e-6)
    assert out["crossattn"].shape == (1, 77, 96)
    assert "sd1only" in cond.embedding_index.skipped and "xlemb" in cond.embedding_index.word_embeddings
    assert "width 32" in cond.embedding_index.skipped["sd1only"] and "96" in cond.embedding_index.skipped["sd1only"]


def test_wrong_width_is_skipped_with_a_note(sd1: dict, tmp_path: Path) -> None:
    save_a1111_pt(tmp_path / "sd15style.pt", vectors(2, 768, seed=9))
    save_file({"clip_l": vectors(1, 768, seed=1), "clip_g": vectors(1, 1280, seed=1)}, str(tmp_path / "xl.safetensors"))
    cond = conditioner(sd1, "sd1", tmp_path)
    skipped = cond.embedding_index.skipped
    assert skipped["sd15style"] == "vectors of width 768 (SD1.x), but the loaded model needs 32"
    assert "2048 (SDXL)" in skipped["xl"]
    assert cond.embedding_index.word_embeddings == {}
    plain = cond.get_learned_conditioning(["a sd15style"])
    assert plain.shape == (1, 77, 32)  # the name stays ordinary text
    assert cond.embedding_db.skipped == skipped
    save_a1111_pt(tmp_path / "huge.pt", vectors(76, 32, seed=9))
    cond.embedding_db.refresh(force=True)
    assert "at most 75" in cond.embedding_index.skipped["huge"]


def test_malicious_pickle_is_refused_without_running(sd1: dict, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"string_to_param": {"*": Exploit()}}, tmp_path / "evil.pt")
    with open(tmp_path / "evil2.pt", "wb") as f:
        pickle.dump({"string_to_param": {"*": Exploit()}}, f)
    with pytest.raises(UnsafeFileError, match="refused: the pickle asks to load posix.system"):
        load_embedding_file(tmp_path / "evil.pt")
    save_a1111_pt(tmp_path / "good.pt", vectors(1, 32, seed=10))
    cond = conditioner(sd1, "sd1", tmp_path)
    assert list(cond.embedding_index.word_embeddings) == ["good"]
    failed = cond.embedding_db.failed
    assert set(failed) == {str(tmp_path / "evil.pt"), str(tmp_path / "evil2.pt")}
    assert all("refused" in reason for reason in failed.values())
    assert not marker.exists()


def test_unrecognised_contents_are_reported(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError, match="exactly one entry"):
        embedding_from_data({"string_to_param": {"a": torch.zeros(1, 4), "b": torch.zeros(1, 4)}}, "two")
    with pytest.raises(EmbeddingError, match="not a textual-inversion embedding"):
        embedding_from_data({"x": torch.zeros(2, 4), "y": torch.zeros(2, 4)}, "lora-like")
    with pytest.raises(EmbeddingError, match="different|clip_l has 1 vectors"):
        embedding_from_data({"clip_l": torch.zeros(1, 4), "clip_g": torch.zeros(2, 8)}, "xl")
    (tmp_path / "trunc.pt").write_bytes(b"PK\x03\x04garbage")
    db = EmbeddingDatabase(tmp_path)
    db.refresh()
    assert "corrupt" in db.failed[str(tmp_path / "trunc.pt")]


def test_refresh_picks_up_new_files_and_invalidates_cache(sd1: dict, tmp_path: Path) -> None:
    cond = conditioner(sd1, "sd1", tmp_path)
    before = cond.get_learned_conditioning(["a photo of lateemb"])
    assert cond.get_learned_conditioning(["a photo of lateemb"]) is before
    save_a1111_pt(tmp_path / "lateemb.pt", vectors(1, 32, seed=11))
    after = cond.get_learned_conditioning(["a photo of lateemb"])
    assert "lateemb" in cond.embedding_index.word_embeddings
    assert not torch.allclose(after, before)
    # Rewriting the file with other vectors is noticed too (size or mtime change).
    save_a1111_pt(tmp_path / "lateemb.pt", vectors(3, 32, seed=12))
    os.utime(tmp_path / "lateemb.pt", ns=(time.time_ns() + 10**9,) * 2)
    assert cond.embedding_index.word_embeddings["lateemb"].vectors == 3
    (tmp_path / "lateemb.pt").unlink()
    assert cond.embedding_index.word_embeddings == {}
    assert not cond.embedding_db.refresh()  # nothing changed since


def test_chunking_with_embeddings_and_emphasis(sd1: dict, tmp_path: Path) -> None:
    save_a1111_pt(tmp_path / "fivevec.pt", vectors(5, 32, seed=13))
    cond = conditioner(sd1, "sd1", tmp_path, emphasis="No norm")
    assert count_tokens(cond, "a fivevec", 20) == (6, 75)
    # 72 words leave 3 places: the 5 vectors do not fit and start the next chunk.
    chunks, count = cond.tokenize_line(" ".join(["cat"] * 72) + " fivevec")
    assert len(chunks) == 2 and count == 80
    assert [pos for pos, _ in chunks[1].fixes] == [0] and chunks[0].fixes == []
    # Emphasis weights apply to every inserted vector.
    chunks, _ = cond.tokenize_line("a (fivevec:1.3)")
    assert chunks[0].multipliers[2:7] == [1.3] * 5
    plain = cond.get_learned_conditioning(["a fivevec"])
    weighted = cond.get_learned_conditioning(["a (fivevec:1.3)"])
    torch.testing.assert_close(weighted[0, 2:7], plain[0, 2:7] * 1.3)
    torch.testing.assert_close(weighted[0, 7:], plain[0, 7:])
