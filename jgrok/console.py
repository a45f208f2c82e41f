"""The `jgrok` command (pyproject's `[project.scripts]`): one sub-command per entry point of
experiments/, which stay the documented way to run them.

    jgrok diagram --preset=cpu_grok --out=runs/x2_cpu     # = python experiments/phase_diagram.py ...
    jgrok diagram --help                                  # that script's flags

A sub-command runs its script as `python experiments/<script>.py` would, with the arguments
that follow it, so the flags, their help and the exit codes are the script's own. The wheel
carries the scripts as the package `jgrok.experiments` (pyproject's `package-dir`); in a source
tree they are read from experiments/ beside the package.
"""

from __future__ import annotations

import importlib.util
import runpy
import sys
from pathlib import Path
from typing import Optional, Sequence

#: sub-command -> (script in experiments/, what it does)
COMMANDS = {
    "diagram": ("phase_diagram", "train a phase diagram (seeds x fractions x weight decays x "
                                 "lrs x init scales) into a resumable run directory"),
    "survey": ("op_survey", "one sweep per operation: the phase per operation x fraction"),
    "plot": ("plot", "redraw the tables and figures of a finished or partial run directory"),
    "progress": ("progress_measures", "Nanda et al.'s progress measures, or Gromov's IPR"),
}


def usage() -> str:
    """The text of `jgrok --help`: the sub-commands and where their flags are listed."""
    width = max(map(len, COMMANDS))
    lines = ["usage: jgrok COMMAND [FLAGS]", "",
             "Runs an entry point of jgrok's experiments/ with its own flags.", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {what} (experiments/{script}.py)"
              for name, (script, what) in COMMANDS.items()]
    lines += ["", "jgrok COMMAND --help lists that command's flags."]
    return "\n".join(lines)


def experiments_dir() -> Path:
    """The folder holding the entry points: experiments/ of a source tree (an editable
    install), else the installed package `jgrok.experiments`."""
    source = Path(__file__).resolve().parent.parent / "experiments"
    if (source / "phase_diagram.py").is_file():
        return source
    spec = importlib.util.find_spec("jgrok.experiments")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("jgrok's entry points are missing: neither experiments/ beside "
                                "the package nor jgrok.experiments is installed")
    return Path(list(spec.submodule_search_locations)[0])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run `jgrok COMMAND ARGS...`; returns the exit code (2 for an unknown command; a
    script's own exit codes, 2 for its bad input, leave as `SystemExit`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    if args[0] not in COMMANDS:
        print(f"error: unknown command {args[0]!r}; known: {', '.join(COMMANDS)} "
              f"(jgrok --help)", file=sys.stderr)
        return 2
    folder = experiments_dir()
    script = folder / f"{COMMANDS[args[0]][0]}.py"
    # as `python experiments/<script>.py ARGS`: its folder first on the path (the scripts
    # import their shared flag modules by name), argv[0] the script (its --help lists the
    # flags of the modules beside it)
    sys.path.insert(0, str(folder))
    sys.argv = [str(script), *args[1:]]
    runpy.run_path(str(script), run_name="__main__")  # its exit codes leave as SystemExit
    return 0


if __name__ == "__main__":
    sys.exit(main())
