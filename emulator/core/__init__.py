"""
The sans-IO SMTP server core: bytes in, actions out.

Owns the connection state machine (L{emulator.core.connection}), the verb
handlers of RFC 5321 (L{emulator.core.commands}), the reply catalogue's
rendering (L{emulator.core.replies}), bulk message framing
(L{emulator.core.framing}), per-connection state (L{emulator.core.session})
and the vocabulary of actions a host carries out (L{emulator.core.actions}).

It imports nothing else of the emulator, and never a reactor, a socket, a
file or a clock: everything else builds on it.
"""
