"""How the synthetic producers misbehave in streaming: late micrographs, a failure.

Both test producers (:mod:`.protocol_synthetic_movies`,
:mod:`.protocol_synthetic_particles`) emit their items in batches; with these
options their micrographs can follow the items some batches later (as a
motion-correction run that writes the micrograph after aligning: the
micrograph output appears after the items' output), and the run can fail
after some batches, once: a continued run ("Continue") goes on, skipping the
items already output.
"""

import os

import pyworkflow.protocol.params as params

_FAILED_ONCE = "failed_once.txt"


def defineScheduleParams(form):
    """The ``micDelay`` and ``failAfter`` params (in the current section)."""
    form.addParam("micDelay", params.IntParam, default=0,
                  validators=[params.GE(0, "Cannot be negative.")],
                  label="Micrograph delay (batches)",
                  help="The micrographs of a batch are output this many batches after "
                       "its items (the run keeps going to output the last ones).")
    form.addParam("failAfter", params.IntParam, default=0,
                  validators=[params.GE(0, "Cannot be negative.")],
                  label="Fail after (batches)",
                  help="The run fails after outputting this many batches (0 = never), "
                       "once: a continued run outputs the rest.")


def batchPlan(nBatches, micDelay):
    """``(itemBatch, micBatch)`` of each emission step, either None when that step has
    none: items of batch b at step b, its micrographs at step b + micDelay."""
    return [(b if b < nBatches else None, b - micDelay if b >= micDelay else None)
            for b in range(nBatches + micDelay)]


def failOnceAfter(protocol, step):
    """Raise at the end of step ``failAfter`` (1-based) of the run's first execution."""
    marker = protocol._getExtraPath(_FAILED_ONCE)
    if step + 1 != protocol.failAfter.get() or os.path.exists(marker):
        return
    with open(marker, "w") as fh:
        fh.write(f"failed after batch {step + 1}\n")
    raise RuntimeError(f"Synthetic failure after batch {step + 1} (failAfter); "
                       "continue the run to output the rest.")


def presentIds(outSet):
    """Ids already in a reopened output set (continue), or an empty set for a new one."""
    return set(outSet.getUniqueValues("id")) if outSet.getSize() else set()
