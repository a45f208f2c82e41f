"""Helpers shared by the absl entry points in `experiments/`: list parsing and the rule that bad
input ends the program with one line on stderr and exit code 2 (never a traceback)."""

from __future__ import annotations

import sys
from typing import Callable, Sequence

from jgrok.config import MAX_RUNS
from jgrok.errors import ConfigError, Stopped


def parse_floats(spec: str | Sequence[str], name: str) -> tuple[float, ...]:
    """'0.1,0.2' or ['0.1', '0.2'] or 'start:stop:num' (inclusive, evenly spaced)."""
    items = spec if not isinstance(spec, str) else spec.split(",")
    items = [s.strip() for s in items if str(s).strip()]
    if len(items) == 1 and items[0].count(":") == 2:
        a, b, n = items[0].split(":")
        try:
            a, b, n = float(a), float(b), int(n)
        except ValueError:
            raise ConfigError(f"--{name}={items[0]!r} is not start:stop:num")
        if not 1 <= n <= MAX_RUNS:
            raise ConfigError(f"--{name}={items[0]!r}: num must be in [1, {MAX_RUNS:,}]")
        return tuple(round(a + (b - a) * i / max(n - 1, 1), 10) for i in range(n))
    try:
        vals = tuple(float(s) for s in items)
    except ValueError:
        raise ConfigError(f"--{name}={','.join(items)!r} is not a list of numbers")
    if not vals:
        raise ConfigError(f"--{name} is empty")
    return vals


def parse_ints(spec: str | Sequence[str], name: str) -> tuple[int, ...]:
    items = spec if not isinstance(spec, str) else spec.split(",")
    try:
        vals = tuple(int(str(s).strip()) for s in items if str(s).strip())
    except ValueError:
        raise ConfigError(f"--{name}={spec!r} is not a list of integers")
    if not vals:
        raise ConfigError(f"--{name} is empty")
    return vals


def run_main(main: Callable[[list], None], argv: list | None = None) -> None:
    """absl-style `app.run` with one-line errors and exit code 2 for bad input."""
    from absl import flags

    argv = list(sys.argv if argv is None else argv)
    if any(a in ("-h", "--help", "--helpfull") for a in argv[1:]):
        print(_help(argv[0], full="--helpfull" in argv))
        sys.exit(0)
    try:
        rest = flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
    try:
        use_cpu_cores(_cpu_devices(flags.FLAGS))
        main(rest)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Stopped as e:
        print(str(e), file=sys.stderr)
        sys.exit(128 + e.signum)
    except KeyboardInterrupt:
        print("interrupted; finished results are on disk (resume with --resume)", file=sys.stderr)
        sys.exit(130)


def _cpu_devices(fv) -> int:
    """The entry point's --cpu_devices (0 if it has none); with several processes
    (--coordinator) the default is one CPU device per process, the layout the user chose."""
    n = fv["cpu_devices"].value if "cpu_devices" in fv else 0
    if n == 0 and "coordinator" in fv and fv["coordinator"].value:
        return 1
    return n


def _help(script: str, full: bool) -> str:
    """The flags of the entry point and of the modules beside it (common_flags.py); every
    flag, absl's own included, with ``full``."""
    import os

    from absl import flags

    if full:
        return flags.FLAGS.get_help()
    here = os.path.dirname(os.path.abspath(script))

    def beside(name):
        path = getattr(sys.modules.get(name), "__file__", None) or name
        return os.path.dirname(os.path.abspath(path)) == here

    modules = [m for m in flags.FLAGS.flags_by_module_dict() if beside(m)]
    return "\n\n".join(flags.FLAGS.module_help(m) for m in modules)


#: XLA's option that splits the host (CPU) platform into this many devices
HOST_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def use_cpu_cores(n: int = 0) -> None:
    """Make the CPU platform ``n`` devices (0: one per usable core), so a sweep's runs are
    sharded over the cores and each core trains its share one run after another: the
    process-per-core arrangement inside one process (measured 1.5-1.7x more run-steps/s than
    one CPU device on an idle 2-core machine, results/benchmarks/). Only the host platform
    is split; GPUs/TPUs are unaffected. Must run before JAX starts its backends; an
    ``--xla_force_host_platform_device_count`` already in $XLA_FLAGS wins, and ``n = 1``
    leaves the single CPU device."""
    import os

    if n < 0:
        raise ConfigError(f"--cpu_devices={n} must be >= 0 (0: one per core)")
    n = n or usable_cores()
    current = os.environ.get("XLA_FLAGS", "")
    if n > 1 and HOST_DEVICES_FLAG not in current:
        os.environ["XLA_FLAGS"] = f"{current} {HOST_DEVICES_FLAG}={n}".strip()


def enable_compilation_cache(enabled: bool = True) -> None:
    """Point JAX's persistent compilation cache at ~/.cache/jgrok/jax (unless
    $JAX_COMPILATION_CACHE_DIR names another folder), so a resumed or repeated sweep does not
    compile again; nothing if not `enabled` (--nocompilation_cache)."""
    if not enabled:
        return
    import os

    import jax

    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        jax.config.update("jax_compilation_cache_dir",
                          os.path.join(os.path.expanduser("~"), ".cache", "jgrok", "jax"))
    if not os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def init_distributed(coordinator: str, num_processes: int = 1, process_id: int = 0) -> None:
    """`jax.distributed.initialize` (--coordinator/--num_processes/--process_id); must run
    before anything else uses JAX. Without a coordinator: nothing (one process); "auto" lets
    JAX detect TPU pods and SLURM/Open MPI clusters."""
    if not coordinator:
        return
    import jax

    if coordinator == "auto":
        jax.distributed.initialize()
        return
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ConfigError(f"--process_id={process_id} must be in [0, "
                          f"--num_processes={num_processes})")
    # CPU processes exchange arrays through gloo (GPUs and TPUs use their own collectives)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)
