"""``python -m qwen3_rerank.cli``: the same command line as ``qwen3-rerank``."""

import sys

from . import main

sys.exit(main())
