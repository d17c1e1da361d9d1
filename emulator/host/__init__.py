"""
The Twisted host: the thin edge that carries out what the sans-IO cores ask
(L{emulator.host.protocol} for servers, L{emulator.host.middlebox} for
middleboxes), the emulation that one profile's listeners share
(L{emulator.host.emulation}), and C{twistd emulator}'s options and service
(L{emulator.host.tap}).
"""
