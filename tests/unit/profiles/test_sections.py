"""emulator.profiles.sections: what a server profile holds is listed in one
place, and nothing registers itself by being imported."""

import json
import subprocess
import sys

from emulator import middlebox, quirks
from emulator.core import commands
from emulator.profiles import sections


def _fresh(code: str):
    """What C{code} prints as JSON in a new interpreter (nothing imported before it)."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(result.stdout)


def test_auth_is_in_the_verb_table_before_any_profile_is_loaded():
    """The full verb table is the core's verbs plus AUTH, XAUTH and X-EXPS, there
    from import on (they used to appear only once some profile had loaded)."""
    seen = _fresh("import json, sys\n"
                  "from emulator.profiles.sections import VERBS\n"
                  "print(json.dumps([list(VERBS), 'emulator.profiles.loader' in sys.modules]))\n")
    assert seen == [[*commands.VERBS, "AUTH", "XAUTH", "X-EXPS"], False]


def test_importing_auth_leaves_the_core_verb_table_alone():
    """The core's table is the core's: importing authentication writes nothing into it."""
    assert _fresh("import json\n"
                  "from emulator.core import commands\n"
                  "before = list(commands.VERBS)\n"
                  "import emulator.auth.mechanisms, emulator.profiles.loader\n"
                  "emulator.profiles.loader.load('ims55sp4')\n"
                  "print(json.dumps(before == list(commands.VERBS) and 'AUTH' not in commands.VERBS))\n") is True


def test_the_families_are_listed_in_full():
    """Every quirk and middlebox type is in its package's list, in the documented order, from import on."""
    assert list(quirks.types_()) == ["reply", "disconnect", "stall", "delay", "split", "tarpit", "glue", "inject",
                                     "bare_lf", "missing_space", "trailing_space", "reply_override",
                                     "starttls_buffer_leak", "tls_session_not_secure"]
    assert sorted(middlebox.types_()) == ["asa-esmtp", "pix-mailguard", "pix-mailguard-noop", "starttls-intercept",
                                         "starttls-strip"]
    assert sections.FAMILIES == (quirks.QUIRKS, middlebox.MIDDLEBOXES)


def test_every_top_level_key_is_a_field_of_the_document():
    """The keys a shipped server profile uses are the Document's fields, sections included."""
    from emulator.profiles import loader
    from emulator.schema import keys

    used = {key for name in loader.names(include_abstract=True)
            for key in loader.read_document(loader.resolve(name))}
    assert used <= set(keys(sections.Document))
    assert {"tls", "auth", "middlebox", "limits", "quirks"} <= set(keys(sections.Document))
