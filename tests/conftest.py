import contextlib
import errno
import os
import sys
from pathlib import Path

import pytest

# Tests import their shared helpers (tiny_models) as top-level modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))
# Never reach for a model or dataset hub from the tests.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture
def without_dropout_check(monkeypatch):
    """Lets R-Drop (and R3F at σ = 0) run on the tiny models, whose dropout is 0, for tests of their
    arithmetic: the passes are deterministic and the divergence is 0. What the check refuses is
    tested in tests/methods/test_rdrop.py."""
    import rxf.methods.r3f
    import rxf.methods.rdrop

    for module in (rxf.methods.r3f, rxf.methods.rdrop):
        monkeypatch.setattr(module, "require_dropout", lambda *args, **kwargs: None)
        monkeypatch.setattr(module, "refuse_without_dropout", lambda *args, **kwargs: None)


@pytest.fixture
def full_disk():
    """``with full_disk(name_part):`` the disk fills up during a write: ``Path.write_text`` or ``write_bytes``
    of a file whose name contains ``name_part`` (any file when it is empty) writes half its content, then
    fails with ENOSPC. Writes are as usual again after the block."""

    def half_then_full(real_write, name_part: str):
        def write(self, data, *args, **kwargs):
            if name_part not in self.name:
                return real_write(self, data, *args, **kwargs)
            real_write(self, data[: len(data) // 2], *args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device", str(self))

        return write

    @contextlib.contextmanager
    def filled(name_part: str = ""):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Path, "write_text", half_then_full(Path.write_text, name_part))
            patch.setattr(Path, "write_bytes", half_then_full(Path.write_bytes, name_part))
            yield

    return filled
