"""The smallest server profile that loads, as YAML text with a {name} field: tests
of the loader and of sections change one key of it."""

import textwrap

GOOD = textwrap.dedent("""\
    name: {name}
    product: "Test"
    version: "1.0"
    describes: "test"
    hostname: "h.test"
    commands: [HELO, QUIT]
    replies:
      greeting: "220 {{hostname}} ready"
      helo: "250 OK"
      syntax_helo: "501 bad"
      quit: "221 bye"
      unknown: "500 what"
      line_too_long: "500 long"
      data_line_too_long: "500 long text"
      too_many_commands: "421 enough"
      too_many_errors: "421 errors"
      too_many_connections: "421 busy"
""")
