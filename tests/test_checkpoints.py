"""When the checkpoint thread saves the indexes: every CHECKPOINT_CHANGES writes, at the first pause of a bulk of writes,
and at the latest CHECKPOINT_SECONDS after a trickle."""

from __future__ import annotations

from typing import Any, cast

from searchd.checkpoints import CHECKPOINT_CHANGES, CHECKPOINT_IDLE_CHANGES, Checkpoints


def test_a_save_is_due_every_so_many_writes_and_when_a_bulk_of_writes_pauses() -> None:
    checkpoints = Checkpoints(cast(Any, None))  # due() looks only at its own counts
    checkpoints.saved(1_000)
    assert not checkpoints.due(1_000 + CHECKPOINT_CHANGES - 1)  # writes still coming in: wait for the full count
    assert checkpoints.due(1_000 + CHECKPOINT_CHANGES)
    assert not checkpoints.due(1_000 + CHECKPOINT_IDLE_CHANGES - 1, idle=True)  # a trickle waits for the minute
    assert checkpoints.due(1_000 + CHECKPOINT_IDLE_CHANGES, idle=True)  # the end of an import: saved while idle
    assert not checkpoints.due(1_000 + CHECKPOINT_IDLE_CHANGES, idle=False)
    assert not checkpoints.due(1_000, idle=True)  # nothing new
