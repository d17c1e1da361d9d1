"""A test persona for the RFC 3030 and Exchange verbs: ims55sp4 extended with
CHUNKING/BDAT, BINARYMIME, PIPELINING, ATRN and X-LINK2STATE.  Its new texts
are test texts ([P]: the shipped 5.x personas have no BDAT); the personas of
issue 16 give the products' own."""

import textwrap
from pathlib import Path

from emulator.profiles import loader as profiles

TEXT = """\
name: {name}
extends: ims55sp4
describes: "test: ims55sp4 with CHUNKING and Exchange 2000's verbs"
commands: [HELO, EHLO, MAIL, RCPT, DATA, BDAT, RSET, NOOP, QUIT, HELP, ETRN, EXPN, XEXCH50, STARTTLS, AUTH,
           XAUTH, ATRN, X-LINK2STATE]
ehlo_keywords: ["PIPELINING", "BINARYMIME", "CHUNKING", "SIZE 0", "AUTH LOGIN", "X-LINK2STATE", "XEXCH50"]
xexch50: {{blob: false, login: true}}   # the default, whatever the 5.5 base takes
replies:
  bdat_ok: "250 2.0.0 {{size}} bytes received"
  bdat_syntax: "501 5.5.4 Invalid arguments"
  bdat_sequence: "503 5.5.2 Bad sequence of commands"
  atrn: "502 5.3.3 Command not implemented"
  xlink2state: "250 2.0.0 OK"
  xexch50: "504 Need to authenticate first"
  xexch50_ready: "354 Send binary data"
  xexch50_ok: "250 2.0.0 OK"
  xexch50_syntax: "501 5.5.4 Invalid arguments"
"""


def load(folder: Path, extra: str = "") -> profiles.Profile:
    """Write the persona into C{folder} and load it; with C{extra} (YAML
    keys), load a profile C{chunky-extra} that extends it with those."""
    path = folder / "chunky.yaml"
    path.write_text(TEXT.format(name="chunky"))
    if extra:
        path = folder / "chunky-extra.yaml"
        path.write_text("name: chunky-extra\nextends: chunky\n" + textwrap.dedent(extra))
    return profiles.load(path)
