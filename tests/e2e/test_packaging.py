"""The wheel: contents, and the dropin and profiles working after a normal (non-editable) install."""

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(ROOT)], check=True, cwd=out)
    (path,) = out.glob("legacy_smtp_emulator-*.whl")
    return path


def test_wheel_contents(wheel):
    """The wheel has the package, the profiles and the web console as package data and the dropin, and no
    twisted/__init__.py."""
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/emulator_plugin.py" in names
    assert "emulator/profiles/shipped/ims55sp4.yaml" in names and "emulator/profiles/shipped/exchange55.yaml" in names
    assert "emulator/core/connection.py" in names
    assert {f"emulator/control/console/{name}" for name in ("index.html", "console.js", "console.css")} <= names
    assert "emulator/sender/matrix.yaml" in names and "emulator/profiles/shipped/outlook98.yaml" in names
    assert "twisted/__init__.py" not in names and "twisted/plugins/__init__.py" not in names
    assert not any(n.endswith("dropin.cache") for n in names)


def test_installed_wheel_finds_profiles_and_dropin(wheel, tmp_path):
    """Installed into a plain folder (no checkout on sys.path), twistd finds the plugin and profiles load by name."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True)
    deps = sysconfig.get_paths()["purelib"]
    probe = (
        "import emulator, emulator.profiles.loader as p\n"
        "from twisted.plugin import getPlugins\n"
        "from twisted.application.service import IServiceMaker\n"
        f"assert emulator.__file__.startswith({str(target)!r}), emulator.__file__\n"
        "assert 'site' in str(p.resolve('ims55sp4')), p.resolve('ims55sp4')\n"
        "assert p.load('ims55sp4').version == '5.5.2653.13'\n"
        "print(sorted(m.tapname for m in getPlugins(IServiceMaker)))\n"
    )
    # -S: no site processing, so the editable checkout's .pth is not on sys.path.
    result = subprocess.run([sys.executable, "-S", "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                            env={"PYTHONPATH": f"{target}:{deps}"})
    assert result.returncode == 0, result.stderr
    assert "'emulator'" in result.stdout
