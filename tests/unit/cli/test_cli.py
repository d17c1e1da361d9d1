"""The emulator command: profiles, show, check, transcript."""

import subprocess
import sys

import yaml

from emulator import cli

from emulator.profiles import loader as profiles


def run(capsys, *argv):
    status = cli.main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_profiles_lists_name_product_version_description(capsys):
    """Each runnable profile is one row; abstract bases are not listed."""
    status, out, _ = run(capsys, "profiles")
    assert status == 0
    assert out.splitlines()[0].split() == ["NAME", "PRODUCT", "VERSION", "DESCRIPTION"]
    assert any(line.startswith("ims55sp4 ") and "5.5.2653.13" in line for line in out.splitlines())
    assert "exchange55" not in out


def test_show_prints_the_resolved_profile_as_loadable_yaml(capsys, tmp_path):
    """The output of show is itself a valid profile, with inherited keys resolved."""
    status, out, _ = run(capsys, "show", "ims55sp4")
    assert status == 0
    document = yaml.safe_load(out)
    assert document["replies"]["quit"] == "221 closing connection"
    assert "extends" not in document
    copy = tmp_path / "ims55sp4.yaml"
    copy.write_text(out)
    assert profiles.load(copy).replies == profiles.load("ims55sp4").replies


def test_check_reports_file_key_problem_and_exit_1(capsys, tmp_path):
    """check prints file:key: problem for a bad file and exits 1."""
    bad = tmp_path / "bad.yaml"
    bad.write_text('name: bad\nversion: 5.5\n')
    status, out, _ = run(capsys, "check", str(bad))
    assert status == 1
    assert out.strip() == f"{bad}:version: must be a quoted string (YAML reads 5.5 as a number), not 5.5"


def test_check_accepts_the_shipped_profiles(capsys):
    """check exits 0 on every shipped profile, abstract ones included."""
    paths = [str(profiles.resolve(n)) for n in profiles.names(include_abstract=True)]
    status, out, _ = run(capsys, "check", *paths)
    assert status == 0, out


def test_show_unknown_profile_is_one_line_and_exit_1(capsys):
    """An unknown name is a one-line error on stderr."""
    status, out, err = run(capsys, "show", "nosuch")
    assert status == 1 and out == ""
    assert err.startswith("emulator: nosuch:(name): no profile of that name")


def test_console_script_is_installed():
    """The emulator console command runs (entry point)."""
    result = subprocess.run([sys.executable, "-m", "emulator.cli", "profiles"], capture_output=True, text=True)
    assert result.returncode == 0 and "ims55sp4" in result.stdout
