"""The `jgrok` command (`jgrok/console.py`, pyproject's `[project.scripts]`): its sub-commands
run the scripts of experiments/ with their own flags and exit codes, and the wheel carries
those scripts."""

import os
import shutil
import subprocess
import sys
import tomllib

import pandas as pd
import pytest

from jgrok import console

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pyproject() -> dict:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


def _jgrok(*args, cwd):
    env = dict(os.environ, JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
    return subprocess.run([*_command(), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _command() -> list[str]:
    """The installed `jgrok` script of this interpreter's environment."""
    path = shutil.which("jgrok", path=os.path.dirname(sys.executable))
    assert path, "no jgrok command beside this Python: pip install -e . (again)"
    return [path]


def test_the_wheel_lists_every_package_and_the_scripts():
    tool = _pyproject()["tool"]["setuptools"]
    under_jgrok = sorted(  # every folder of jgrok/: packages and the data tables' folder
        os.path.relpath(d, ROOT).replace(os.sep, ".")
        for d, _, _ in os.walk(os.path.join(ROOT, "jgrok")) if "__pycache__" not in d)
    assert sorted(tool["packages"]) == sorted([*under_jgrok, "jgrok.experiments"])
    assert tool["package-dir"] == {"jgrok.experiments": "experiments"}
    assert _pyproject()["project"]["scripts"] == {"jgrok": "jgrok.console:main"}
    for script, _ in console.COMMANDS.values():
        assert (console.experiments_dir() / f"{script}.py").is_file()


def test_unknown_or_missing_command_exits_2(capsys):
    assert console.main(["bogus"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown command 'bogus'; known: diagram, survey, plot, "
                          "progress") and err.count("\n") == 1
    assert console.main([]) == 2


@pytest.mark.slow
def test_help_lists_the_sub_commands_after_pip_install(tmp_path):
    r = _jgrok("--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for name, (script, _) in console.COMMANDS.items():
        assert f"  {name} " in r.stdout and f"experiments/{script}.py" in r.stdout
    # a sub-command's help is its script's: plot.py's own flag and the shared rule flags
    r = _jgrok("plot", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "--run: run directory holding metrics.csv" in r.stdout
    assert "--gen_acc" in r.stdout


@pytest.mark.slow
def test_a_sub_command_runs_its_script_with_its_flags_and_exit_codes(tmp_path):
    r = _jgrok("plot", f"--run={tmp_path / 'missing'}", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert r.stderr.startswith("error: no metrics table at")
    # redraws a committed result's tables as they are committed
    run = tmp_path / "add_transformer_small"
    shutil.copytree(os.path.join(ROOT, "results", "add_transformer_small"), run)
    os.remove(run / "phases.csv")
    r = _jgrok("plot", f"--run={run}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    committed = pd.read_csv(os.path.join(ROOT, "results", "add_transformer_small", "phases.csv"))
    pd.testing.assert_frame_equal(pd.read_csv(run / "phases.csv"), committed)
