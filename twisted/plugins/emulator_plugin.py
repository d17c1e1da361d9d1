"""
twistd dropin for the legacy-smtp emulator: C{twistd emulator --help}.

This folder must stay without C{__init__.py}.  The dropin names the module
by string, so that C{twistd --help} does not import the emulator.
"""

from twisted.application.service import ServiceMaker

legacySMTPEmulator = ServiceMaker(
    "legacy-smtp emulator",
    "emulator.tap",
    "Emulated legacy Microsoft Exchange and IIS SMTP servers",
    "emulator",
)
