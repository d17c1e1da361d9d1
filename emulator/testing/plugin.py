"""
pytest plugin (entry point C{pytest11: legacy_smtp}): emulated legacy SMTP
servers as fixtures, for testing mail clients.

    def test_client(legacy_smtp):
        server = legacy_smtp.start("ims55sp2")
        send_with_my_client(server.host, server.port)
        assert "<- 554 Unable to initialize security subsystem" in server.human()

Fixtures:
 - C{legacy_smtp} (function): a L{emulator.testing.pool.LegacySMTP}; starts
   nothing until C{.start(profile, ...)}, unless the test is marked
   C{@pytest.mark.legacy_smtp(profile, ...)} or parametrizes it
   (C{legacy_smtp_profiles(...)}, or C{indirect=True} with profile names or
   dicts of C{start()} arguments).
 - C{legacy_smtp_servers} (session): the L{emulator.testing.pool.ServerPool}
   behind it, which runs the reactor in one background thread; its
   C{.start()} gives further handles, for a test that needs two servers.

After the test, anything the emulator raised while serving it fails the
test (L{emulator.testing.pool.ServerSideError}), and a failing test's report
gets the sessions in arrow form (section "legacy-smtp").

Importing this module is cheap and inert: the emulator, Twisted and the
reactor are imported by the fixtures when a test first uses them.
"""

from __future__ import annotations

import pytest

_POOL = pytest.StashKey()
_MARKER = ("legacy_smtp(profile='ims55sp4', *, tls=False, implicit_tls=False, hostname=None, middlebox=None, "
           "accounts=(), local_domains=(), relay_from=()): "
           "serve PROFILE to the test's legacy_smtp fixture")


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", _MARKER)


@pytest.fixture(scope="session")
def legacy_smtp_servers(request, tmp_path_factory):
    """The session's emulated servers (L{emulator.testing.pool.ServerPool}):
    one reactor thread, servers reused across tests, certificates under
    the session's temporary folder."""
    from emulator.testing.pool import ServerPool

    pool = ServerPool(tmp_path_factory.mktemp("legacy-smtp"))
    request.config.stash[_POOL] = pool
    yield pool
    del request.config.stash[_POOL]
    pool.close()


@pytest.fixture
def legacy_smtp(request, legacy_smtp_servers):
    """The test's emulated server (L{emulator.testing.pool.LegacySMTP}): call
    C{.start(profile)}, or get one started by the C{legacy_smtp} marker or
    by parametrizing this fixture."""
    from emulator.testing.pool import LegacySMTP

    handle = LegacySMTP(legacy_smtp_servers)
    requested = _requested(request)
    if requested is not None:
        args, kwargs = requested
        handle.start(*args, **kwargs)
    return handle


def _requested(request):
    """The C{start()} arguments asked for by parameter and marker, or None."""
    marker = request.node.get_closest_marker("legacy_smtp")
    args, kwargs = (marker.args, dict(marker.kwargs)) if marker else ((), {})
    param = getattr(request, "param", None)
    if isinstance(param, dict):
        kwargs.update(param)
        args = ()
    elif param is not None:
        args = (param,)
    return (args, kwargs) if marker or param is not None else None


def legacy_smtp_profiles(*names: str, where=None, **options):
    """Parametrize the C{legacy_smtp} fixture over profiles: the ones named,
    or every runnable profile (those C{where(profile)} accepts, and with
    C{implicit_tls=True} only those that offered SMTPS); C{options} go to
    C{start()}.  One line runs a client against every persona::

        @legacy_smtp_profiles()
        def test_client_against_every_persona(legacy_smtp): ...
    """
    if not names:
        names = tuple(p.name for p in _all_profiles()
                      if (where is None or where(p))
                      and (not options.get("implicit_tls") or p.tls.implicit))
    return pytest.mark.parametrize(
        "legacy_smtp", [pytest.param({"profile": name, **options}, id=name) for name in names], indirect=True)


def _all_profiles() -> tuple:
    from emulator.profiles import loader as profiles

    global _PROFILES
    if _PROFILES is None:
        _PROFILES = tuple(profiles.load(name) for name in profiles.names())
    return _PROFILES


_PROFILES = None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item) -> None:
    pool = item.config.stash.get(_POOL, None)
    if pool is not None:
        pool.begin_test()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    __tracebackhide__ = True
    pool = _pool_of(item)
    if pool is None:
        return (yield)
    try:
        result = yield
    except (pytest.skip.Exception, pytest.xfail.Exception, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as failure:
        _report(item, pool)
        summary = (str(failure).splitlines() or [""])[0]
        pool.check_errors(note=f"the test failed too, with {type(failure).__name__}: {summary}")
        raise
    try:
        pool.check_errors()
    except BaseException:
        _report(item, pool)
        raise
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    __tracebackhide__ = True
    pool = _pool_of(item)
    result = yield
    if pool is not None:
        pool.check_errors()
    return result


def _pool_of(item):
    if "legacy_smtp_servers" not in getattr(item, "fixturenames", ()):
        return None
    return item.config.stash.get(_POOL, None)


def _report(item, pool) -> None:
    try:
        text = pool.report()
    except Exception as e:  # the report must never hide the test's failure
        text = f"(no transcripts: {type(e).__name__}: {e})"
    if text:
        item.add_report_section("call", "legacy-smtp", text)
