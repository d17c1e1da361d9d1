"""Any mutation of a valid profile, server or client, either loads or is
refused with exactly one line `file:key: problem` (emulator.schema's promise)."""

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from emulator.profiles import loader as profiles
from emulator.sender import profile as clientprofile

SCALARS = (st.none() | st.booleans() | st.integers(-3, 70000) | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=20))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=10) | st.integers(0, 3), inner, max_size=3), max_leaves=8)


def _documents(loader):
    documents = {}
    for name in loader.names():
        document = loader.resolved_document(name)
        document.pop("extends", None)
        documents[name] = document
    return documents


VALID = {profiles: _documents(profiles), clientprofile: _documents(clientprofile)}


class _Quoted(yaml.SafeDumper):
    """Quote every string, as a profile's reply texts must be."""


_Quoted.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style='"'))


def _places(node, path=()):
    """Every (container, key) in a document, the top level included."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield node, key
            yield from _places(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield node, index
            yield from _places(value, path + (index,))


def _swap(text: str, at: int) -> str:
    """A typo: two neighbouring characters swapped."""
    if len(text) < 2:
        return text + "x"
    at %= len(text) - 1
    return text[:at] + text[at + 1] + text[at] + text[at + 2:]


@st.composite
def mutated(draw):
    loader = draw(st.sampled_from([profiles, clientprofile]))
    name = draw(st.sampled_from(sorted(VALID[loader])))
    document = yaml.safe_load(yaml.safe_dump(VALID[loader][name]))  # a deep copy
    container, key = draw(st.sampled_from(list(_places(document))))
    kind = draw(st.sampled_from(["replace", "typo", "delete", "add", "rename"]))
    if kind == "replace":
        container[key] = draw(VALUES)
    elif kind == "typo" and isinstance(container[key], str):
        container[key] = _swap(container[key], draw(st.integers(0, 20)))
    elif kind == "delete":
        del container[key]
    elif kind == "add" and isinstance(container, dict):
        container[draw(st.text(min_size=1, max_size=10))] = draw(VALUES)
    elif kind == "rename" and isinstance(container, dict) and isinstance(key, str):
        container[_swap(key, draw(st.integers(0, 20)))] = container.pop(key)
    else:
        container[key] = draw(VALUES)
    return loader, name, document


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutated())
def test_a_mutated_profile_loads_or_is_one_line(tmp_path, case):
    """Replacing, misspelling, deleting, adding or renaming any key or value anywhere gives a
    profile that loads, or one ProfileError whose text is exactly `file:key: problem` on one line."""
    loader, name, document = case
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.dump(document, Dumper=_Quoted, sort_keys=False, allow_unicode=True))
    try:
        loader.load(path)
    except profiles.ProfileError as e:
        assert str(e) == f"{path}:{e.key}: {e.problem}"
        assert e.key and e.problem and "\n" not in str(e)
