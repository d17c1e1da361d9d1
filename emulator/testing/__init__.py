"""
Test support for users of the emulator, in one place.

    from emulator.testing import Harness               # the core in memory, no sockets
    from emulator.testing import MiddleboxHarness      # the same through a middlebox
    from emulator.testing import start_server          # a real listener in a reactor thread
    from emulator.testing import legacy_smtp_profiles  # parametrize a test over personas
    from emulator.testing import TWISTD, free_port, wait_for_banner   # twistd in a subprocess

The pytest plugin (entry point C{legacy_smtp}) is L{emulator.testing.plugin};
its fixtures are built on the server pool of L{emulator.testing.pool}.

Importing this package imports nothing else: pytest loads the plugin in
every suite of the environment, so each name is imported when first asked
for (PEP 562).
"""

from importlib import import_module

_EXPORTS = {
    "DATE": "harness", "TWISTD": "harness", "Harness": "harness", "RunningServer": "harness",
    "free_port": "harness", "start_server": "harness", "wait_for_banner": "harness",
    "MiddleboxHarness": "middlebox", "legacy_smtp_profiles": "plugin",
    "LegacySMTP": "pool", "ServerPool": "pool", "ServerSideError": "pool",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'emulator.testing' has no attribute {name!r}")
    return getattr(import_module(f"emulator.testing.{module}"), name)
