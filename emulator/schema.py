"""
The one strict reader of profile data.  Server profiles, client profiles,
their sections, quirks, faults and middleboxes are all read by L{read}, so
that every mistake is refused the same way: one line, C{key: problem}, which
the loaders turn into C{file:key: problem} (L{ProfileError}).

A record is a class whose fields are the keys a file may hold (a trailing
underscore is dropped: C{from_} is the key C{from}); their types say what
each key takes, and every other key is refused.  Constraints are written on
the type with msgspec's C{Meta} inside C{Annotated}::

    times: Annotated[int, Meta(ge=0)] = 0
    scope: Annotated[Literal["connection", "peer"], Meta(description="connection or peer")] = "connection"
    accounts: Annotated[tuple[Account, ...], SECRET] = ()     # values never repeated in an error
    limits: Annotated[Limits, keys_called("limit")] = Limits()  # "unknown limit; known limits: ..."

(C{ge}, C{gt}, C{le}, C{min_length}; a C{description} replaces the words
a type or range error would use), choices are C{Literal}, and rules across
keys are the record's C{__post_init__}, which raises L{invalid}C{(key,
problem)}.  Kinds written C{{type, attributes}} (quirks, middleboxes) are a
L{Family}: the type picks a record, whose fields are the attributes.

The work is msgspec's (C{msgspec.convert(..., strict=True)}, in C): types,
ranges, choices, unknown and missing keys, each with its path, which
L{read} words as this project always has.  Records come in two kinds:

  - L{Record}, a frozen C{msgspec.Struct} with C{forbid_unknown_fields}:
    the quirk and middlebox types, read as they are.  Every start imports
    all of them, and a Struct class is made in C: importing the faults
    took about 11 ms with dataclasses, about 2 ms with Structs.
  - a frozen dataclass: the sections, limits, profiles and personas, which
    code and tests vary with C{dataclasses.replace} (a profile with other
    limits, a persona with another TLS rule).  For each, L{read} derives
    once a frozen Struct with C{forbid_unknown_fields} and converts into
    that, then makes the dataclass; a float key keeps an integer as written,
    as the hand-written readers did (see L{number}).

Why msgspec rather than pydantic or attrs+cattrs: start-up is measured and
these readers run at every start.  In this checkout (Python 3.11, msgspec
0.23, C{python -X importtime}, the least of 7 runs on a shared machine)
C{import msgspec} costs 4 to 7 ms once Twisted's modules are imported
(C{twistd}, C{emulator serve}: typing, typing_extensions and inspect are
there already) and 11 to 17 ms without them (C{emulator check}, which then
pays for typing_extensions, uuid and decimal too); pydantic costs 50 ms or
more by its first model, and attrs+cattrs about 20 ms while still needing
hand-written messages.  msgspec's strict conversion, C{Meta} constraints,
C{Literal} choices and error paths are what six hand-written readers did
before.  Loading C{ims55sp4} takes no longer than with those readers
(0.89 ms against 0.93 ms, the least of 3000 loads).

This module imports only msgspec and the standard library: every reader of
the emulator (profiles, sender personas, tls, auth, quirks, middleboxes)
sits above it.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Union

import msgspec
import msgspec.structs
from msgspec import UNSET, Meta, UnsetType

#: C{Annotated[str, SECRET]}: the value never appears in an error message
#: (a password); the mark covers everything below a field too.
SECRET = Meta(extra={"secret": True})


#: A count, 0 or more.
Count = Annotated[int, Meta(ge=0)]
#: Seconds of a timeout: above 0, since a timeout is never off (the count
#: limits take 0 for "no limit"; a timeout of 0 would never fire).
Timeout = Annotated[float, Meta(gt=0, description="a number of seconds above 0 (a timeout cannot be off)")]


def keys_called(singular: str) -> Meta:
    """C{Annotated[Limits, keys_called("limit")]}: what the keys of that
    record are called in an error (C{unknown limit; known limits: ...});
    C{key} by default."""
    return Meta(extra={"noun": singular})


class SchemaError(ValueError):
    """A value that does not fit its record.  C{key} is where, relative to the
    value that was read (C{""}: the value itself); C{str()} is the problem."""

    def __init__(self, key: str, problem: str):
        super().__init__(problem)
        self.key, self.problem = key, problem

    def within(self, prefix: str) -> "SchemaError":
        """The same problem, seen from the value that holds this one at C{prefix}."""
        return SchemaError(join(prefix, self.key), self.problem)


class ProfileError(Exception):
    """A profile (or middlebox) file that cannot run.  C{str()} is C{file:key: problem}."""

    def __init__(self, path: str | Path, key: str, problem: str):
        # One line whatever the file holds: a key may contain a newline
        # (YAML allows "\n" as a key), which is shown escaped.
        key, problem = _one_line(key), _one_line(problem)
        super().__init__(f"{path}:{key}: {problem}")
        self.path, self.key, self.problem = str(path), key, problem


def _one_line(text: str) -> str:
    """C{text} with line breaks and other control characters escaped (C{\\n})."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def invalid(key: str, problem: str) -> SchemaError:
    """The error a record's C{__post_init__} raises for its key C{key}."""
    return SchemaError(key, problem)


def join(*keys: str) -> str:
    """C{quirks[0]} and C{attributes.from} are C{quirks[0].attributes.from}."""
    out = ""
    for key in keys:
        if key:
            out = f"{out}{key}" if not out or key.startswith("[") else f"{out}.{key}"
    return out


def number(**constraints):
    """A number with C{Meta} C{constraints} (C{ge=0}) that keeps an integer as
    written (C{2} stays C{2}, not C{2.0}: a fault's C{repr} seeds its dice)."""
    return Union[Annotated[int, Meta(**constraints)], Annotated[float, Meta(**constraints)]]


def did_you_mean(word, known: Iterable[str], cutoff: float = 0.6) -> str:
    """C{"did you mean X? "} for the closest of C{known} (difflib's ratio
    C{cutoff} or more), or C{""}.  With a mapping, the keys are compared and
    the value is shown."""
    if not isinstance(word, str):
        return ""
    import difflib  # only when a mistake is worded: 2 ms of every start otherwise

    close = difflib.get_close_matches(word, list(known), n=1, cutoff=cutoff)
    if not close:
        return ""
    shown = known[close[0]] if isinstance(known, collections.abc.Mapping) else close[0]
    return f"did you mean {shown}? "


def key_name(attribute: str) -> str:
    """The key of a record's attribute in a file: its name without a trailing
    underscore (C{from_} is C{from}, a Python keyword)."""
    return attribute[:-1] if attribute.endswith("_") else attribute


def key_of(f: dataclasses.Field) -> str:
    """The key of a dataclass record's field."""
    return key_name(f.name)


class Field(typing.NamedTuple):
    """One key of a record: its C{key} in a file, its C{attribute}, and its
    C{default} (L{REQUIRED} if it has none)."""

    key: str
    attribute: str
    default: Any


#: The default of a key that must be given.
REQUIRED = msgspec.NODEFAULT


def fields(cls) -> list[Field]:
    """A record's keys, in declaration order."""
    if _is_struct(cls):
        return [Field(f.encode_name, f.name, f.default if f.default_factory is REQUIRED else f.default_factory())
                for f in msgspec.structs.fields(cls)]
    out = []
    for f in dataclasses.fields(cls):
        if f.init:
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            out.append(Field(key_of(f), f.name, REQUIRED if default is dataclasses.MISSING else default))
    return out


def keys(cls) -> dict[str, str]:
    """A record's keys in a file -> its attribute names, in declaration order."""
    return {f.key: f.attribute for f in fields(cls)}


class Record(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, dict=True, rename=key_name):
    """A record that is a msgspec Struct: read as it is, and made in C, which
    matters for the quirk and middlebox types that every start imports.  Its
    C{repr} is a dataclass's.

    A subclass that adds a key without a default after keys with one says
    C{kw_only=True}; C{__post_init__} keeps what it works out with
    C{msgspec.structs.force_setattr} (C{dict=True} gives it a place)."""


# -- reading --------------------------------------------------------------------


class Family:
    """Kinds written C{{type, attributes}} (quirks, middleboxes): C{type}
    names one of C{members} (each says its name in a class attribute
    C{type}), C{attributes} are that record's keys.

    A record field typed with C{base} is read through L{build} when L{read}
    is given this family.
    """

    def __init__(self, noun: str, base: type, members: Iterable[type]):
        self.noun, self.base = noun, base
        self.types = {member.type: member for member in members}

    def build(self, entry):
        """The member C{entry} describes, or L{SchemaError} naming the key at fault."""
        if not isinstance(entry, dict):
            raise SchemaError("", "must be a mapping with type and attributes")
        for key in entry:
            if key not in ("type", "attributes"):
                raise SchemaError(str(key), f"unknown key; {did_you_mean(key, ('type', 'attributes'))}"
                                            f"a {self.noun} has type and attributes")
        name = entry.get("type")
        cls = self.types.get(name) if isinstance(name, str) else None
        if cls is None:
            known = sorted(self.types)
            raise SchemaError("type", f"unknown {self.noun} type {name!r}; {did_you_mean(name, known)}"
                                      f"known: {', '.join(known)}")
        attributes = entry.get("attributes")
        if attributes is None:
            attributes = {}
        if not isinstance(attributes, dict):
            raise SchemaError("attributes", "must be a mapping")
        try:
            return read(attributes, cls, noun=f"attribute of {name}")
        except SchemaError as e:
            raise e.within("attributes") from None


def read(value, kind, *, families: Iterable[Family] = (), noun: str = "key",
         given: dict | None = None, ignore: Iterable[str] = ()):
    """C{value} (plain data, as YAML gives it) as C{kind}, a record or any type
    of records, or L{SchemaError}.

    @param families: the L{Family} of each family-typed field below.
    @param noun: what the keys of C{kind} are called in an error.
    @param given: fields of C{kind} that are not read but given (a profile's path).
    @param ignore: keys that are accepted and not read (checked elsewhere).
    """
    given = given or {}
    shadow = _shadow(kind, frozenset(given), frozenset(ignore))
    families = tuple(families)
    data = _convert(value, shadow, kind, families, noun, given, ignore)
    return _rebuild(data, "", given)


def check(value, kind, *, shallow: bool = False, families: Iterable[Family] = (), noun: str = "key",
          given: Iterable[str] = (), ignore: Iterable[str] = ()) -> None:
    """Check C{value} against the dataclass record C{kind} with every key
    optional (an abstract profile), without making it; C{shallow} checks only its own
    keys and the kind of each value (a mapping, a list, a string), not what
    they hold.  The other parameters are L{read}'s."""
    shadow = _shadow(kind, frozenset(given), frozenset(ignore), optional=True, shallow=shallow)
    _convert(value, shadow, kind, tuple(families), noun, given, ignore)


def _convert(value, shadow, kind, families, noun, given, ignore):
    hook = None
    if families:
        by_base = {family.base: family for family in families}

        def hook(tp, obj):
            family = by_base.get(tp)
            if family is None:
                raise NotImplementedError
            return family.build(obj)
    try:
        return msgspec.convert(value, shadow, strict=True, dec_hook=hook)
    except msgspec.ValidationError as e:
        raise _translate(e, value, kind, noun, tuple(given), tuple(ignore)) from None


# -- dataclass records as strict msgspec Structs ------------------------------------

_MAPPINGS = (dict, collections.abc.Mapping)
_SHADOWS: dict = {}
# shadow class -> (record class, ((attribute, key) of each field that may hold
# records, ...), the attributes of ignored keys)
_RECORDS: dict[type, tuple[type, tuple]] = {}


def _is_dataclass(hint) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _is_struct(hint) -> bool:
    return isinstance(hint, type) and issubclass(hint, msgspec.Struct)


def _is_record(hint) -> bool:
    return _is_dataclass(hint) or _is_struct(hint)


def _shadow(kind, given: frozenset = frozenset(), ignore: frozenset = frozenset(), *,
            optional: bool = False, shallow: bool = False):
    """The msgspec type that C{kind} is converted into (cached)."""
    cache = (kind, given, ignore, optional, shallow)
    if cache not in _SHADOWS:
        if _is_struct(kind) and not (given or ignore or optional or shallow):
            _SHADOWS[cache] = kind  # strict already
        elif _is_dataclass(kind):
            _SHADOWS[cache] = _struct(kind, given, ignore, optional, shallow)
        else:
            _SHADOWS[cache] = _rewrite(kind)
    return _SHADOWS[cache]


def _struct(cls, given, ignore, optional, shallow):
    hints = typing.get_type_hints(cls, include_extras=True)
    members, nested = [], []
    for f in dataclasses.fields(cls):
        if not f.init or f.name in given:
            continue
        hint = _flatten(hints[f.name]) if shallow else _rewrite(hints[f.name])
        if f.default is not dataclasses.MISSING:  # filled in by msgspec, in C
            members.append((f.name, hint, msgspec.field(default=f.default, name=key_of(f))))
        elif f.default_factory is not dataclasses.MISSING:
            members.append((f.name, hint, msgspec.field(default_factory=f.default_factory, name=key_of(f))))
        elif optional:  # a partial check: absent is UNSET, and nothing is made
            members.append((f.name, Union[hint, UnsetType], msgspec.field(default=UNSET, name=key_of(f))))
        else:
            members.append((f.name, hint, msgspec.field(name=key_of(f))))
        if _holds_records(hint):
            nested.append((f.name, key_of(f)))
    ignored = tuple(f"_ignored_{key}" for key in ignore)
    members += [(name, Any, msgspec.field(default=UNSET, name=key)) for name, key in zip(ignored, ignore)]
    struct = msgspec.defstruct(cls.__name__, members, kw_only=True, frozen=True, forbid_unknown_fields=True,
                               module=cls.__module__)
    _RECORDS[struct] = (cls, tuple(nested), ignored)
    return struct


def _rewrite(hint):
    """C{hint} with each record replaced by its shadow, and each float
    widened to C{int | float} (an integer stays an integer, as written)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return _annotated(_rewrite(hint.__origin__), hint.__metadata__)
    if hint is float:
        return Union[int, float]
    if _is_dataclass(hint):
        return _shadow(hint)
    if origin in (Union, types.UnionType):
        return Union[tuple(_rewrite(a) for a in args)]
    if origin is tuple and args:
        return tuple[(*(_rewrite(a) for a in args[:-1]), args[-1] if args[-1] is ... else _rewrite(args[-1]))]
    if origin is list and args:
        return list[_rewrite(args[0])]
    if origin in _MAPPINGS and args:
        return dict[args[0], _rewrite(args[1])]
    return hint


def _annotated(hint, metas):
    if hint == Union[int, float]:  # msgspec takes numeric constraints only on a single type
        return Union[Annotated[(int, *metas)], Annotated[(float, *metas)]]
    return Annotated[(hint, *metas)]


def _flatten(hint):
    """C{hint} with what containers hold left unchecked (a shallow check)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return _annotated(_flatten(hint.__origin__), hint.__metadata__)
    if origin in (Union, types.UnionType):
        return Union[tuple(_flatten(a) for a in args)]
    if origin is Literal or hint in (str, int, bool, type(None), Any):
        return hint
    if hint is float:
        return Union[int, float]
    if origin in (tuple, list):
        return list
    return dict  # records, families and mappings


def _holds_records(hint) -> bool:
    if hint in _RECORDS:
        return True
    return any(_holds_records(a) for a in typing.get_args(hint) if a is not ...)


def _rebuild(value, path: str, given: dict | None = None):
    """The records of a converted value, made from their shadows; a
    record's own rule (C{__post_init__}) names its key below C{path}."""
    record = _RECORDS.get(type(value))
    if record is None:
        if type(value) is tuple:
            return tuple(_rebuild(v, f"{path}[{i}]") for i, v in enumerate(value))
        if type(value) is list:
            return [_rebuild(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if type(value) is dict:
            return {k: _rebuild(v, join(path, str(k))) for k, v in value.items()}
        return value
    cls, nested, ignored = record
    values = msgspec.structs.asdict(value)
    for name, key in nested:
        values[name] = _rebuild(values[name], join(path, key))
    for name in ignored:
        del values[name]
    if given:
        values.update(given)
    try:
        return cls(**values)
    except SchemaError as e:
        raise e.within(path) from None
    except ValueError as e:  # a rule that says no other way
        raise SchemaError(join(path, getattr(e, "key", None) or ""), str(e)) from None


# -- msgspec's errors in this project's words -------------------------------------

_WHERE = re.compile(r"\A(?P<problem>.*?)(?: - at (?:`key` in )?`\$(?P<path>[^`]*)`)?\Z", re.DOTALL)
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")


def _translate(error: msgspec.ValidationError, value, kind, noun: str, given: tuple, ignore: tuple) -> SchemaError:
    """msgspec's C{error} about C{value} read as C{kind}, as this project words it:
    the key from its path, and the problem from what the type there says."""
    text = str(error)
    match = _WHERE.match(text)
    problem, path = match["problem"], match["path"] or ""
    walk = _Walk(kind, value)
    for name, index in _STEP.findall(path):
        walk.step(name, index)
    where, cause = walk.key, error.__cause__
    if " - at `key` in " in text:
        bad = next((k for k in walk.value if not isinstance(k, str)), None) if isinstance(walk.value, dict) else None
        return SchemaError(where, f"keys must be strings, not {bad!r}")
    if isinstance(cause, SchemaError):
        return cause.within(where)
    if cause is not None:
        return SchemaError(join(where, getattr(cause, "key", None) or ""), str(cause))
    # A field name may hold any character, a line break too (DOTALL).
    unknown = re.match(r"Object contains unknown field `(.*)`\Z", problem, re.DOTALL)
    if unknown:
        name, record = unknown[1], walk.record()
        known = [k for k, attribute in keys(record).items() if not (walk.is_root and attribute in given)] if record else []
        known += ignore if walk.is_root else ()
        if not walk.is_root:
            nouns = [m.extra["noun"] for m in walk.metas() if m.extra and "noun" in m.extra]
            noun = nouns[0] if nouns else "key"
        return SchemaError(join(where, name), f"unknown {noun}; {did_you_mean(name, known)}"
                                              f"known {noun.split()[0]}s: {', '.join(known)}")
    missing = re.match(r"Object missing required field `(.*)`\Z", problem, re.DOTALL)
    if missing:
        return SchemaError(join(where, missing[1]), "is required")
    metas = walk.metas()
    if problem.startswith("Expected") and " got " not in problem:  # a range or a length
        described = [m.description for m in metas if m.description]
        return SchemaError(where, f"must be {described[0]}" if described else _bounds(metas, problem))
    told = f"must be {describe(walk.hint)}"
    if walk.secret or any(m.extra and m.extra.get("secret") for m in metas):
        return SchemaError(where, told)
    return SchemaError(where, f"{told}, not {_shown(walk.value)}")


def _peel(hint) -> tuple[Any, list[Meta]]:
    """C{hint} without its C{Annotated} layers, and their C{Meta}s."""
    metas = []
    while typing.get_origin(hint) is Annotated:
        metas += [m for m in hint.__metadata__ if isinstance(m, Meta)]
        hint = hint.__origin__
    return hint, metas


def _members(hint) -> list[tuple[Any, list[Meta]]]:
    """The peeled members of a union (or C{hint} itself), None last."""
    hint, metas = _peel(hint)
    if typing.get_origin(hint) not in (Union, types.UnionType):
        return [(hint, metas)]
    members = [_peel(a) for a in typing.get_args(hint)]
    return sorted(((h, metas + m) for h, m in members), key=lambda hm: hm[0] is type(None))


class _Walk:
    """Follows an error's path through the type that was read and the value given."""

    def __init__(self, kind, value):
        self.hint, self.value, self.key = kind, value, ""
        self.secret, self.is_root = False, True

    def metas(self) -> list[Meta]:
        """The C{Meta}s of the current place (of each member of a union)."""
        return [m for _, metas in _members(self.hint) for m in metas]

    def _pick(self, want):
        return next(((h, m) for h, m in _members(self.hint) if want(h)), (Any, []))

    def record(self):
        hint, _ = self._pick(_is_record)
        return hint if _is_record(hint) else None

    def step(self, name: str, index: str) -> None:
        self.secret = self.secret or any(m.extra and m.extra.get("secret") for m in self.metas())
        if name:
            record = self.record()
            attribute = keys(record).get(name) if record else None
            hint = typing.get_type_hints(record, include_extras=True)[attribute] if attribute else Any
            self.value = self.value.get(name) if isinstance(self.value, dict) else None
            self.key = join(self.key, name)
        elif index == "...":  # msgspec does not say which key of a mapping: find it
            mapping, _ = self._pick(lambda h: typing.get_origin(h) in _MAPPINGS)
            hint = typing.get_args(mapping)[1] if typing.get_args(mapping) else Any
            items = self.value.items() if isinstance(self.value, dict) else ()
            bad = next((k for k, v in items if not _fits(v, hint)), "...")
            self.value = self.value.get(bad) if isinstance(self.value, dict) else None
            self.key = join(self.key, str(bad))
        else:
            sequence, _ = self._pick(lambda h: typing.get_origin(h) in (tuple, list))
            args = [a for a in typing.get_args(sequence) if a is not ...]
            hint = args[0] if args else Any
            self.value = self.value[int(index)] if isinstance(self.value, list) else None
            self.key = f"{self.key}[{index}]"
        self.hint, self.is_root = hint, False


def _fits(value, hint) -> bool:
    try:
        msgspec.convert(value, _shadow(hint), strict=True)
    except (msgspec.ValidationError, TypeError):
        return False
    return True


_WORDS = {str: "a quoted string", int: "an integer", float: "a number", bool: "true or false",
          type(None): "null", Any: "anything"}


def describe(hint) -> str:
    """What a value of type C{hint} is, in a profile writer's words."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        described = [m.description for m in hint.__metadata__ if isinstance(m, Meta) and m.description]
        return described[0] if described else describe(hint.__origin__)
    if origin is Literal:
        return "one of " + ", ".join("null" if a is None else str(a) for a in args)
    if origin in (Union, types.UnionType):
        kept = [a for a in args if a is not type(None)] or list(args)
        if {_peel(a)[0] for a in kept} == {int, float}:
            return "a number"
        return " or ".join(describe(a) for a in kept)
    if origin in (tuple, list):
        item = describe(args[0]) if args else "anything"
        if item.startswith("one of "):
            return f"a list of names from {item[len('one of '):]}"
        return f"a list of {_plural(item)}"
    if _is_record(hint) or origin in _MAPPINGS or hint is dict:
        return "a mapping"
    if isinstance(hint, type) and hint not in _WORDS:
        return "a mapping with type and attributes"  # a family
    return _WORDS.get(hint, str(hint))


def _plural(words: str) -> str:
    for article in ("a ", "an "):
        if words.startswith(article):
            words = words[len(article):]
    if words.startswith("true or false"):
        return "true or false values"
    return words if words.endswith("s") else f"{words}s"


def _bounds(metas: list[Meta], problem: str) -> str:
    for m in metas:
        if m.min_length is not None:
            return "must not be empty" if m.min_length == 1 else f"must hold at least {m.min_length}"
        if m.ge is not None and m.le is not None:
            return f"must be from {m.ge} to {m.le}"
        if m.ge is not None:
            return "must not be negative" if m.ge == 0 else f"must be {m.ge} or more"
        if m.gt is not None:
            return f"must be more than {m.gt}"
        if m.le is not None:
            return f"must be {m.le} or less"
    return problem


def _shown(value) -> str:
    """A value as the profile wrote it (YAML's null, true, false), kept short."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
