"""Where the benchmark data of ../shared/data lies, for tests that read it (skipped where absent)."""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("RXF_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()
GLUE_DIR = Path(os.environ.get("RXF_GLUE_DIR", SHARED_DATA / "glue")).resolve()

needs_glue = pytest.mark.skipif(not GLUE_DIR.is_dir(), reason=f"GLUE TSVs not found at {GLUE_DIR} (set RXF_GLUE_DIR)")
