"""The phase rule's flags (`jgrok.analysis.phases.PhaseThresholds`), for the entry points that
label runs after training (plot.py, mnist_variants.py)."""

from __future__ import annotations

from absl import flags

from jgrok.analysis.phases import RULES, PhaseThresholds

FLAGS = flags.FLAGS
_DEFAULT = PhaseThresholds()
flags.DEFINE_enum("rule", _DEFAULT.rule, list(RULES), "phase rule (jgrok.analysis.phases)")
flags.DEFINE_float("fit_acc", _DEFAULT.fit_acc, "plateau rule: train accuracy that counts as "
                   "fitted")
flags.DEFINE_float("gen_acc", _DEFAULT.gen_acc, "plateau rule: validation accuracy that counts "
                   "as generalized")
flags.DEFINE_float("hold_acc", _DEFAULT.hold_acc, "plateau rule: a run counts as generalized "
                   "only if its validation accuracy at the last evaluation is at least this")
flags.DEFINE_float("plateau_factor", _DEFAULT.plateau_factor, "plateau rule: val acc stays below "
                   "half-way until this many times the fit step")
flags.DEFINE_float("delay_factor", _DEFAULT.delay_factor, "plateau rule: grokking generalizes "
                   "at >= this many times the fit step")


def thresholds_from_flags() -> PhaseThresholds:
    return PhaseThresholds(rule=FLAGS.rule, fit_acc=FLAGS.fit_acc, gen_acc=FLAGS.gen_acc,
                           hold_acc=FLAGS.hold_acc, plateau_factor=FLAGS.plateau_factor,
                           delay_factor=FLAGS.delay_factor)
