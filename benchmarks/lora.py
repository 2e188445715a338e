"""Apply and restore of a rank-32 kohya LoRA on a full-size SD1.5-architecture model (random weights), CPU.

Uses the cached random checkpoint of benchmarks/load_checkpoint.py (written once if missing) and writes a
rank-32 LoRA over every UNet attention/feed-forward/proj layer and every text-encoder attention/MLP layer
(the layers kohya's trainer covers). Prints: first apply (includes reading the file), apply when the set is
unchanged (target 0 s), restore, re-apply, a weight change (same LoRA, other multiplier), and whether the
restore was bit-exact. Usage: venv/bin/python benchmarks/lora.py [--dtype float16|bfloat16|float32]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

RANK = 32
_UNET_LAYERS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k",
                "attn2.to_v", "attn2.to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out")
_TE_LAYERS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2")


def write_lora(model, path: Path) -> int:
    """A kohya-layout rank-32 LoRA for `model` (LoadedModel); returns the number of layers."""
    import torch
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    tensors = {}
    for prefix, root, layers in (("lora_unet_", model.pipe.unet, _UNET_LAYERS),
                                 ("lora_te_", model.pipe.text_encoder, _TE_LAYERS)):
        for name, module in root.named_modules():
            if not isinstance(module, torch.nn.Linear | torch.nn.Conv2d) or not name.endswith(layers):
                continue
            if prefix == "lora_te_" and not name.startswith("text_model."):
                name = "text_model." + name
            key = prefix + name.replace(".", "_")
            out_f, in_f = module.weight.shape[0], module.weight.shape[1]
            extra = (1, 1) if module.weight.ndim == 4 else ()
            tensors[f"{key}.lora_down.weight"] = (torch.randn(RANK, in_f, *extra, generator=gen) * 0.01).half()
            tensors[f"{key}.lora_up.weight"] = (torch.randn(out_f, RANK, *extra, generator=gen) * 0.01).half()
            tensors[f"{key}.alpha"] = torch.tensor(float(RANK / 2)).half()
    save_file(tensors, str(path), metadata={"ss_network_dim": str(RANK)})
    return sum(1 for k in tensors if k.endswith(".alpha"))


def main() -> None:
    import torch

    from benchmarks.load_checkpoint import checkpoint_path, write_checkpoint
    from modules import lora
    from modules.model_loader import load_model

    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    path = checkpoint_path()
    if not path.exists():
        print(f"writing {path} (once)...")
        write_checkpoint(path)
    model = load_model(str(path), device=torch.device("cpu"), dtype=getattr(torch, args.dtype))
    with tempfile.TemporaryDirectory() as tmp:
        layers = write_lora(model, Path(tmp) / "bench.safetensors")
        db = lora.LoraDatabase([Path(tmp)])
        before = {n: p.detach().clone() for n, p in model.pipe.unet.named_parameters() if n.endswith("to_q.weight")}

        def timed(requests: list) -> tuple[float, bool]:
            t = time.perf_counter()
            result = lora.activate(model, db, requests)
            assert not result.errors, result.errors
            return time.perf_counter() - t, result.written

        req = [lora.LoraRequest("bench", 1.0, 1.0)]
        first, _ = timed(req)
        unchanged, written = timed(req)
        restore, _ = timed([])
        exact = all(torch.equal(before[n], p) for n, p in model.pipe.unet.named_parameters() if n in before)
        again, _ = timed(req)
        other, _ = timed([lora.LoraRequest("bench", 0.5, 0.5)])
        restore2, _ = timed([])
    print(f"rank-{RANK} LoRA over {layers} layers, model dtype {args.dtype}, {torch.get_num_threads()} threads")
    print(f"first apply (reads the file)      {first:.3f}s")
    print(f"apply, unchanged set              {unchanged:.6f}s (weights written: {written})")
    print(f"restore                           {restore:.3f}s (bit-exact: {exact})")
    print(f"apply again (file re-read)        {again:.3f}s")
    print(f"change multiplier                 {other:.3f}s")
    print(f"apply+restore (again + restore2)  {again + restore2:.3f}s (target <= 0.3s)")


if __name__ == "__main__":
    main()
