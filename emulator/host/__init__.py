"""
The Twisted host: the thin edge that carries out what the sans-IO cores ask
(L{emulator.host.protocol} for servers, L{emulator.host.middlebox} for
middleboxes, both on L{emulator.host.edge}), through the one interpreter of
actions that also writes every transcript (L{emulator.host.interpreter},
shared with the in-memory harnesses); what to serve
(L{emulator.host.recipe}) and the emulation that one profile's listeners
share (L{emulator.host.emulation}); and where servers listen, checked
in the user's words (L{emulator.host.endpoints}).  C{twistd emulator}'s
options and service sit above the host and the control API, in
L{emulator.tap}.

L{emulator.host.recipe} and L{emulator.host.interpreter} import no Twisted.
"""
