import os
import sys
from pathlib import Path

# Tests import their shared helpers (tiny_models) as top-level modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))
# Never reach for a model or dataset hub from the tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
