"""An HTTP rerank server (extra ``[server]``): ``qwen3-rerank serve``."""
