"""emulator.schema, the one strict reader: each kind of mistake msgspec finds
is worded as one line, key and problem, as the profile loaders always have."""

from dataclasses import dataclass, field, replace
from typing import Annotated, ClassVar, Literal

import pytest
from msgspec import Meta

from emulator import schema
from emulator.schema import SECRET, Family, SchemaError, keys_called


@dataclass(frozen=True)
class Item:
    """A record inside a list."""

    name: str
    size: Annotated[int, Meta(ge=1)] = 1


@dataclass(frozen=True)
class Bounds:
    """A nested record whose keys are called limits in errors."""

    low: Annotated[int, Meta(ge=0)] = 0
    high: Annotated[float, Meta(gt=0, description="a number of seconds above 0")] = 1.0

    def __post_init__(self):
        if self.high < self.low:
            raise schema.invalid("high", "is below low")


@dataclass(frozen=True)
class Record:
    """A record with one key of each kind."""

    colour: Literal["red", "green"] = "red"
    count: int = 0
    chance: Annotated[float, Meta(ge=0, le=1)] = 1.0
    seconds: float = 1.0
    items: tuple[Item, ...] = ()
    bounds: Annotated[Bounds, keys_called("limit")] = Bounds()
    texts: dict[str, str | list[str]] = field(default_factory=dict)
    password: Annotated[str, SECRET] = ""
    label: str | None = None


def problem(value, kind=Record, **options) -> tuple[str, str]:
    with pytest.raises(SchemaError) as raised:
        schema.read(value, kind, **options)
    assert "\n" not in str(raised.value)
    return raised.value.key, raised.value.problem


def test_a_good_value_reads_into_the_records():
    """Nested records are made, lists become tuples, and absent keys take the record's defaults."""
    read = schema.read({"colour": "green", "items": [{"name": "a"}], "bounds": {"high": 5}}, Record)
    assert read == Record(colour="green", items=(Item("a"),), bounds=Bounds(high=5))


def test_a_number_keeps_the_integer_it_was_written_as():
    """A float key given 2 stays 2, as the YAML said (a fault's repr seeds its dice)."""
    assert repr(schema.read({"seconds": 2}, Record).seconds) == "2"
    assert repr(schema.read({"seconds": 2.5}, Record).seconds) == "2.5"


def test_type():
    """A value of the wrong type names what the key takes, and what it got."""
    assert problem({"count": "5"}) == ("count", "must be an integer, not '5'")
    assert problem({"count": True}) == ("count", "must be an integer, not true")
    assert problem({"count": None}) == ("count", "must be an integer, not null")
    assert problem({"seconds": "x"}) == ("seconds", "must be a number, not 'x'")
    assert problem({"items": "a"}) == ("items", "must be a list of mappings, not 'a'")
    assert problem({"label": 5}) == ("label", "must be a quoted string, not 5")
    assert problem([1, 2]) == ("", "must be a mapping, not a list")


def test_range():
    """A number out of its range says the range, in words (or the key's own description)."""
    assert problem({"chance": 2}) == ("chance", "must be from 0 to 1")
    assert problem({"items": [{"name": "a", "size": 0}]}) == ("items[0].size", "must be 1 or more")
    assert problem({"bounds": {"low": -1}}) == ("bounds.low", "must not be negative")
    assert problem({"bounds": {"high": 0}}) == ("bounds.high", "must be a number of seconds above 0")


def test_choice():
    """A value outside a Literal's choices lists them."""
    assert problem({"colour": "blue"}) == ("colour", "must be one of red, green, not 'blue'")
    assert problem({"colour": 3}) == ("colour", "must be one of red, green, not 3")


def test_unknown_key_with_did_you_mean():
    """An unknown key lists the known ones, and a near miss is named first."""
    key, text = problem({"colur": "red"})
    assert key == "colur" and text.startswith("unknown key; did you mean colour? known keys: colour, count, ")
    assert problem({"zzz": 1})[1].startswith("unknown key; known keys: colour")
    assert problem({"bounds": {"hihg": 1}}) == ("bounds.hihg", "unknown limit; did you mean high? known limits: low, high")


def test_missing():
    """A required key that is absent is named below its record."""
    assert problem({"items": [{"name": "a"}, {"size": 2}]}) == ("items[1].name", "is required")


def test_cross_key_rule():
    """A record's own rule (__post_init__ raising invalid) names its key below the record's path."""
    assert problem({"bounds": {"low": 5, "high": 2}}) == ("bounds.high", "is below low")


def test_nested_list_index():
    """A mistake deep in a list names the item by index."""
    assert problem({"items": [{"name": "a"}, {"name": 7}]}) == ("items[1].name", "must be a quoted string, not 7")


def test_mapping_values_are_named_by_key():
    """msgspec does not say which key of a mapping is wrong; the reader finds it."""
    assert problem({"texts": {"a": "x", "b": 5}}) == ("texts.b", "must be a quoted string or a list of quoted strings, not 5")
    assert problem({"texts": {5: "x"}}) == ("texts", "keys must be strings, not 5")


def test_secret_values_are_never_repeated():
    """A key marked SECRET (a password) is named, its value never shown."""
    assert problem({"password": 918273645}) == ("password", "must be a quoted string")


def test_given_and_ignored_keys():
    """A field can be given instead of read, and file keys can be accepted unread."""

    @dataclass(frozen=True)
    class Located:
        where: str
        what: str = ""

    assert schema.read({"what": "x", "role": "client"}, Located, given={"where": "here"}, ignore=("role",)) == \
        Located("here", "x")
    assert problem({"where": "x"}, Located, given={"where": "here"})[1] == "unknown key; known keys: what"


def test_check_is_partial_and_can_be_shallow():
    """check() leaves every key optional; shallow, it looks at the kind of each value only."""
    schema.check({}, Item)
    with pytest.raises(SchemaError, match="must be a quoted string"):
        schema.check({"name": 5}, Item)
    schema.check({"items": [{"name": 5}]}, Record, shallow=True)
    with pytest.raises(SchemaError) as raised:
        schema.check({"items": {"name": 5}}, Record, shallow=True)
    assert raised.value.key == "items"


class Shape:
    """The base of a test family."""

    type: ClassVar[str] = ""


@dataclass(frozen=True)
class Circle(Shape):
    """A family member."""

    type = "circle"
    radius: Annotated[int, Meta(ge=1)] = 1


@dataclass(frozen=True)
class Drawing:
    """A record holding family members."""

    shapes: tuple[Shape, ...] = ()


SHAPES = Family("shape", Shape, [Circle])


def test_family_entries():
    """{type, attributes} entries: an unknown type lists the known ones, attributes are the member's keys."""
    assert schema.read({"shapes": [{"type": "circle", "attributes": {"radius": 2}}]}, Drawing,
                       families=[SHAPES]) == Drawing((Circle(radius=2),))
    assert problem({"shapes": [{"type": "cirlce"}]}, Drawing, families=[SHAPES]) == \
        ("shapes[0].type", "unknown shape type 'cirlce'; did you mean circle? known: circle")
    assert problem({"shapes": [{"type": "circle", "attributes": {"radius": 0}}]}, Drawing, families=[SHAPES]) == \
        ("shapes[0].attributes.radius", "must be 1 or more")
    assert problem({"shapes": [{"type": "circle", "attributes": {"r": 0}}]}, Drawing, families=[SHAPES]) == \
        ("shapes[0].attributes.r", "unknown attribute of circle; known attributes: radius")
    assert problem({"shapes": ["circle"]}, Drawing, families=[SHAPES]) == \
        ("shapes[0]", "must be a mapping with type and attributes")


def test_records_stay_dataclasses():
    """What is read can be varied with dataclasses.replace, and its rules still hold."""
    bounds = schema.read({"low": 1}, Bounds)
    assert replace(bounds, high=3).high == 3
    with pytest.raises(SchemaError, match="below low"):
        replace(bounds, high=0.5)


def test_join_and_within():
    """Keys join with dots, list indexes without."""
    assert schema.join("quirks[0]", "attributes.from") == "quirks[0].attributes.from"
    assert schema.join("auth", "[1]") == "auth[1]" and schema.join("", "tls") == "tls"
    assert SchemaError("x", "bad").within("tls").key == "tls.x"


def test_a_key_with_a_line_break_is_named_on_one_line(tmp_path):
    """A key YAML allows but no record has, holding a newline, is an unknown key named escaped, and the
    error stays one line (hypothesis found '<file>:: must be a mapping, not a mapping' before)."""
    from emulator.profiles import loader

    (tmp_path / "mine.yaml").write_text('name: mine\nextends: ims55sp4\n"a\\nb": 1\n')
    with pytest.raises(loader.ProfileError) as info:
        loader.load(tmp_path / "mine.yaml")
    assert info.value.key == "a\\nb" and info.value.problem.startswith("unknown key; ")
    assert "\n" not in str(info.value)
