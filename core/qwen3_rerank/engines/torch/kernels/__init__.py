"""Triton kernels of the fast path, each registered as an opaque ``torch.ops.qwen3_rerank`` op."""
