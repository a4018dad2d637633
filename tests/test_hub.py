"""rxf.hub: the hub asked once; without an answer, models and datasets come from the local cache at once."""

import datasets
import huggingface_hub
import pytest

from rxf import hub
from rxf.errors import RxfError
from rxf.tasks import load_task


@pytest.fixture
def fresh_probe():
    hub.reachable.cache_clear()
    yield
    hub.reachable.cache_clear()


def test_reachable_is_one_request_and_any_failure_means_no(monkeypatch, fresh_probe):
    calls = []

    class Session:
        def __init__(self, error):
            self.error = error

        def head(self, url, timeout):
            calls.append((url, timeout))
            if self.error:
                raise self.error

    for error, expected in ((None, True), (ConnectionError("Name or service not known"), False), (TimeoutError(), False)):
        hub.reachable.cache_clear()
        monkeypatch.setattr(huggingface_hub, "get_session", lambda error=error: Session(error))
        assert hub.reachable() is expected
        assert hub.reachable() is expected  # asked once per process
    assert len(calls) == 3 and all(url == huggingface_hub.constants.ENDPOINT and t <= 5 for url, t in calls)


def offline_flags():
    return huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE


def test_cache_only_switches_both_libraries_offline_and_back(monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    with pytest.raises(RuntimeError):
        with hub.cache_only():
            assert offline_flags() == (True, True)
            raise RuntimeError("the load failed")
    assert offline_flags() == (False, False)


@pytest.mark.parametrize("answers", [True, False])
def test_a_hub_dataset_loads_from_the_cache_only_when_the_hub_does_not_answer(monkeypatch, answers):
    seen = []
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "reachable", lambda: answers)
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: seen.append((args, offline_flags())) or "loaded")
    assert hub.load_dataset("someone/reviews", "en") == "loaded"
    assert seen == [(("someone/reviews", "en"), (not answers, not answers))]
    assert offline_flags() == (False, False)


def test_the_user_setting_offline_is_not_second_guessed(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "reachable", lambda: pytest.fail("the hub was asked while off"))
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: "loaded")
    assert hub.load_dataset("someone/reviews") == "loaded"


def test_an_uncached_hub_dataset_with_no_answer_is_named_as_no_network(monkeypatch, tmp_path):
    """Through the real datasets, in its offline mode: the user did not set it, so the message says no network."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    monkeypatch.setattr(hub, "reachable", lambda: False)
    with pytest.raises(RxfError, match=r"'someone/no-such-data' is not one of rxf's tasks, and as a Hugging Face hub "
                                       r"dataset it could not be fetched: the hub cannot be reached \(no network\?\)"):
        load_task("someone/no-such-data")


def test_no_answer_and_not_cached_says_so_not_offline_mode(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    monkeypatch.setattr(hub, "reachable", lambda: False)
    with pytest.raises(ConnectionError, match=r"^the hub cannot be reached \(no network\?\), and 'someone/no-such-data' "
                                              r"is not in the local datasets cache$"):
        hub.load_dataset("someone/no-such-data")
