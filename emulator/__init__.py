"""
legacy-smtp emulator: protocol-level emulation of legacy Microsoft Exchange and
IIS SMTP endpoints, their quirks and the middleboxes in front of them.

The protocol core (L{emulator.core.connection}) is sans-IO; Twisted is a thin edge
(L{emulator.host.protocol}, L{emulator.tap}).
"""

__version__ = "0.1.0"
