"""
Run-time control of a running emulator: listeners whose persona can be
switched, reset, sessions, messages and faults (L{emulator.control.listeners}),
served over HTTP by L{emulator.control.api} (documented in C{openapi.json}).
Builds on the Twisted host.
"""
