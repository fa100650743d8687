"""Two models on the same keys (same namespace and class name) are refused when the class
is defined; the same model defined again (a reload) only warns."""

from __future__ import annotations

import importlib
import sys
import warnings
from pathlib import Path

import pytest

from repocket import ActiveRecord, attributes, errors


class Shared(ActiveRecord):
    class Meta:
        namespace = "unit.registry"

    name = attributes.Unicode()


def test_another_model_on_the_same_keys_is_refused() -> None:
    with pytest.raises(errors.RepocketActiveRecordDefinitionError) as raised:
        class Shared(ActiveRecord):  # another class, the same namespace and class name
            class Meta:
                namespace = "unit.registry"

            title = attributes.Unicode()
    message = str(raised.value)
    assert "repocket:unit.registry:Shared" in message
    assert "tests.unit.test_model_registry.Shared" in message and "namespace" in message


def test_the_same_name_in_another_namespace_is_another_model() -> None:
    class Shared(ActiveRecord):
        class Meta:
            namespace = "unit.registry.other"

    assert Shared._meta.prefix == "repocket:unit.registry.other:Shared"


def test_a_redefinition_in_place_warns_and_works() -> None:
    with pytest.warns(errors.ModelRedefined, match="defined again"):
        class Shared(ActiveRecord):
            __qualname__ = "Shared"  # what a REPL reload of this module produces

            class Meta:
                namespace = "unit.registry"

            name = attributes.Unicode()
            added = attributes.Integer()
    assert "added" in Shared._meta.fields


def test_importlib_reload_warns_once_per_model(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "reloaded_models.py").write_text(
        "from repocket import ActiveRecord, attributes\n"
        "class Note(ActiveRecord):\n"
        "    body = attributes.Unicode()\n"
        "class Tag(ActiveRecord):\n"
        "    label = attributes.Unicode()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the first import warns about nothing
        module = importlib.import_module("reloaded_models")
    try:
        with pytest.warns(errors.ModelRedefined) as caught:
            importlib.reload(module)
        assert sorted(str(w.message).split(" ")[0] for w in caught) == [
            "reloaded_models.Note", "reloaded_models.Tag"]
    finally:
        sys.modules.pop("reloaded_models", None)
