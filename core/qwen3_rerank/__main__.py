"""``python -m qwen3_rerank``: the ``qwen3-rerank`` command where its script is not on PATH."""

import sys

from .cli import main

sys.exit(main())
