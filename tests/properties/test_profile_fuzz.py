"""Profile loader fuzzing: any file either loads or is refused with a ProfileError, nothing else."""

import yaml
from hypothesis import HealthCheck, example, given, settings, strategies as st

from emulator.profiles import loader as profiles

KEYS = ["name", "extends", "product", "version", "describes", "hostname", "commands", "ehlo_keywords",
        "replies", "limits", "require_helo", "quirks", "tls", "abstract", "sources", "bogus"]
SCALARS = st.none() | st.booleans() | st.integers(-5, 5000) | st.floats(allow_nan=False) | st.text(max_size=30)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=12) | st.sampled_from(KEYS), inner, max_size=4),
                      max_leaves=12)


def load_or_refuse(path):
    try:
        profiles.load(path)
    except profiles.ProfileError as e:
        assert str(e).startswith(f"{path}:")


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=8), st.booleans())
def test_structured_documents(tmp_path, document, extend):
    """Random mappings of real and bogus keys, alone or extending a real profile."""
    document = {**document, "name": "fuzz"}
    if extend:
        document["extends"] = "ims55sp4"
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(document))
    load_or_refuse(path)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400))
@example(b"name: fuzz\nreplies: {greeting: !!binary AAAA}\n")
@example(b"\xff\xfe")
@example(b"&a [*a]")
def test_arbitrary_bytes(tmp_path, data):
    """Random bytes as a profile file."""
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    load_or_refuse(path)
