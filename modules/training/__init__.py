"""Training: textual-inversion embeddings, A1111 hypernetworks and kohya-format LoRA, run as queue jobs."""
