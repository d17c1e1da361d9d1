"""Every way of serving a profile builds it from a Recipe and starts its listeners with
Control.serve: twistd's makeService, the control API's profile switch, the fixture pool,
start_server and the in-memory Harness (real listeners on 127.0.0.1 for those that listen)."""

import smtplib

import pytest
from twisted.internet.task import Clock

from emulator.control.listeners import Control
from emulator import tap
from emulator.host.recipe import Recipe
from emulator.testing import Harness, ServerPool, start_server

pytestmark = pytest.mark.e2e


def name(profile) -> str:
    return getattr(profile, "name", profile)


def test_every_caller_builds_from_a_recipe_and_listens_through_control_serve(tmp_path, monkeypatch):
    """Spies on Recipe.loaded (every build reads the profile there) and Control.serve (every
    listener starts there) see each caller, and the servers they start answer."""
    built, served = [], []
    loaded, serve = Recipe.loaded, Control.serve
    monkeypatch.setattr(Recipe, "loaded", lambda recipe: built.append(name(recipe.profile)) or loaded(recipe))
    monkeypatch.setattr(Control, "serve", lambda control, endpoint, **kw: served.append(endpoint)
                        or serve(control, endpoint, **kw))

    options = tap.Options()
    options.parseOptions(["--profile", "ims55sp2", "--listen", "tcp:0", "--state-dir", str(tmp_path)])
    top = tap.makeService(options)
    assert (built, served, len(list(top))) == (["ims55sp2"], ["tcp:0:interface=127.0.0.1"], 1)

    Control(tap.emulation(options), reactor=Clock()).emulation("ex50")  # the API's profile switch
    assert built[-1] == "ex50" and len(served) == 1

    pool = ServerPool(tmp_path / "pool")
    try:
        handle = pool.start("iis4-smtp-128bit")
        assert built[-1] == "iis4-smtp-128bit" and served[-1] == "tcp:0:interface=127.0.0.1"
        with smtplib.SMTP(handle.host, handle.port, timeout=10) as client:
            assert client.noop()[0] == 250
    finally:
        pool.close()

    running = start_server("ims55sp3", state_dir=tmp_path / "state")
    try:
        assert built[-1] == "ims55sp3" and len(served) == 3
        with smtplib.SMTP(running.host, running.port, timeout=10) as client:
            assert client.ehlo()[0] == 250
    finally:
        running.stop()

    Harness("ims55sp4").connect()
    assert built == ["ims55sp2", "ex50", "iis4-smtp-128bit", "ims55sp3", "ims55sp4"]
