"""Whether the Hugging Face hub can be used, asked once, and loading from the local cache when it cannot.

Without a network, huggingface_hub and datasets retry every request with back-off: a minute and
ten warning lines before a model name fails, half a minute before a dataset does, even when the
local cache holds what was asked for. rxf asks the hub once per process (:func:`reachable`, one
request of at most 5 s) and, when it does not answer, goes straight to the cache:
:func:`rxf.models.hub_location` for models, :func:`load_dataset` for datasets.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator


def offline() -> bool:
    """The user switched the hub off (HF_HUB_OFFLINE): transformers then fails at once by itself."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


@functools.lru_cache(maxsize=1)
def reachable(timeout_s: float = 5.0) -> bool:
    """Whether the hub answers one request (any HTTP status counts: only no answer does not)."""
    from huggingface_hub import constants, get_session

    try:
        get_session().head(constants.ENDPOINT, timeout=timeout_s)
    except Exception:  # the client's error classes differ between huggingface_hub versions (requests, httpx)
        return False
    return True


@contextlib.contextmanager
def cache_only() -> Iterator[None]:
    """huggingface_hub and datasets in offline mode for the block: cached files load, others fail at once.

    Both libraries read their offline flag at call time; it is set back afterwards, so that a later
    call (and the error messages that read the flag) see the user's own setting.
    """
    import datasets
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE = before


def load_dataset(*args, **kwargs):
    """``datasets.load_dataset`` for a hub dataset; from the local cache only when the hub cannot be reached.

    A dataset that is not cached then fails at once, with a ConnectionError that says so (datasets'
    own would blame an offline mode the user never set).
    """
    import datasets

    if datasets.config.HF_HUB_OFFLINE or reachable():  # (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE)
        return datasets.load_dataset(*args, **kwargs)
    with cache_only():
        try:
            return datasets.load_dataset(*args, **kwargs)
        except ConnectionError:  # datasets' "Couldn't reach ... (OfflineModeIsEnabled)": the user set nothing offline
            raise ConnectionError(
                f"the hub cannot be reached (no network?), and {args[0]!r} is not in the local datasets cache"
            ) from None
