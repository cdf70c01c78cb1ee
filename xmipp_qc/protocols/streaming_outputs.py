"""Output sets that a streaming protocol grows batch by batch and closes at the end."""

import os
import sqlite3
from contextlib import closing

import pyworkflow.protocol.constants as pwcts
from pyworkflow.object import Set


def _hasData(fn):
    return os.path.exists(fn) and os.path.getsize(fn) > 0


def usableSqlite(fn):
    """Whether ``fn`` holds a non-empty set; a file without items is removed (a kill
    left it half made, or it was closed empty): the next items make it again.

    Opening it first rolls back a hot journal, as sqlite does on the next read.
    """
    if not _hasData(fn):
        return False
    with closing(sqlite3.connect(fn)) as db:
        ok = db.execute("SELECT count(*) FROM sqlite_master WHERE type='table' "
                        "AND name='Objects'").fetchone()[0] > 0
        ok = ok and db.execute("SELECT count(*) FROM Objects").fetchone()[0] > 0
    if not ok:
        os.remove(fn)
    return ok


def updateOutput(protocol, outName, outSet, state):
    """Store output ``outName`` of ``protocol`` (Scipion's ``_updateOutputSet``).

    pyworkflow makes a set's tables with its first item, so a set closed
    without items could not be read at all ("no such table"); such a set gets
    its tables first and reads as empty and closed.
    """
    mapper = outSet._mapper
    if state == Set.STREAM_CLOSED and getattr(mapper, "doCreateTables", False):
        mapper.db.createTables(outSet.ITEM_TYPE().getObjDict(includeClass=True))
        mapper.doCreateTables = False
    protocol._updateOutputSet(outName, outSet, state)


class StreamingOutputsMixin:
    """Append-only streaming outputs, one sqlite file each, that survive a restart.

    Each output set lives in its own sqlite file in the run folder: every
    update reopens it and appends (nothing is rewritten), a continued run finds
    the items already output (:meth:`_outputIds`), and closing it releases the
    step that waits for it. The mixin defines no form parameters and no steps.

    It expects the host, a :class:`pyworkflow.protocol.Protocol` that lists the
    mixin first among its bases, to provide:

    ``_possibleOutputs``
        ``{outputName: setClass}``, as every Scipion protocol;
    ``_outputFiles``
        ``{outputName: sqliteFileName}``, relative to the run folder;
    ``_outputSource(outputName)``
        the set whose info (sampling, acquisition...) a new output copies;
    ``_outputParent()``
        the input pointer each new output is derived from (transform relation);
    a step inserted with ``wait=True``
        when :meth:`_closeStreamingOutputs` should release the final step.
    """

    def _appendToOutput(self, outName, items, state=Set.STREAM_OPEN):
        """Append ``items`` to output ``outName`` (created on first use) and store it.

        Nothing is done for no items while the stream stays open; no items with
        ``Set.STREAM_CLOSED`` closes the output, creating it empty if needed.
        """
        if not items and state == Set.STREAM_OPEN:
            return
        outSet, isNew = self._openOutput(outName), not self.hasAttribute(outName)
        for item in items:
            outSet.append(item)
        updateOutput(self, outName, outSet, state)
        if isNew:
            self._defineTransformRelation(self._outputParent(), outSet)

    def _openOutput(self, outName):
        """Output ``outName`` reopened for appending, or a new open one."""
        fn = self._getPath(self._outputFiles[outName])
        usable = usableSqlite(fn)
        outSet = self._possibleOutputs[outName](filename=fn)
        if usable:
            outSet.loadAllProperties()
            outSet.enableAppend()
        else:
            outSet.copyInfo(self._outputSource(outName))
            outSet.setStreamState(Set.STREAM_OPEN)
        return outSet

    def _outputIds(self, outName):
        """Ids of the items already in output ``outName`` (read from its sqlite file)."""
        fn = self._getPath(self._outputFiles[outName])
        if not _hasData(fn):
            return set()
        outSet = self._possibleOutputs[outName](filename=fn)
        ids = set(outSet.getUniqueValues("id"))
        outSet.close()
        return ids

    def _closeStreamingOutputs(self, outNames):
        """Close the outputs ``outNames`` and release the step waiting for them."""
        for outName in outNames:
            self._appendToOutput(outName, [], state=Set.STREAM_CLOSED)
        outputStep = self._getFirstJoinStep()
        if outputStep is not None and outputStep.isWaiting():
            outputStep.setStatus(pwcts.STATUS_NEW)
