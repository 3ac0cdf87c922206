"""The limits epoch: one number, raised in the transaction that stores any event of a keypair or a
resource policy, so that a gateway's cached policy limits are invalidated by those events at once.

A keypair's limits (rate limit, subscriptions) come from two aggregates: the keypair (which policy
it names) and that policy (its limits). ``LIMITS_EVENTS_TRIGGER_DDL`` puts a row trigger on the event
store's table that raises ``limits_epoch`` whenever an event whose topic starts with ``keypair.`` or
``policy.`` is inserted, whoever writes it (the gateway's mutations, the CLI, a script on the store):
the WHEN clause is checked in C for every stored event, and only those events run the bump. Like the
keypair epoch (``keypair_cache``), every signed request reads the current number along with its
replay-ledger insert, at no round trip of its own, and uses cached limits only when they were loaded
at that epoch or a later one (``services.gateway.keypair_limits``).

Why a row of its own and not the keypair epoch: deactivating a keypair updates the ``keypairs`` table
(which raises the keypair epoch and holds its row until commit) and, before that commits, stores the
``keypair.deactivated`` event on another connection. Had that event raised the same row, the second
connection would wait for the first, which waits for it.
"""

from __future__ import annotations

from services.gateway.auth.epochs import epoch_row_ddl

__all__ = ["LIMITS_EPOCH", "LIMITS_EPOCH_DDL", "LIMITS_EVENTS_TRIGGER_DDL", "TRIGGER_NAME"]

LIMITS_EPOCH_DDL = epoch_row_ddl("limits_epoch", "berth_limits_epoch_bump")
"""The epoch row and the function that raises it (run with the ``keypairs`` table's DDL)."""

TRIGGER_NAME = "berth_events_limits_epoch"
"""The trigger's name; a changed definition would take a new name (an existing trigger is kept)."""

LIMITS_EVENTS_TRIGGER_DDL = f"""
DO $$ BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('berth.gateway.limits_epoch_trigger'));
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = '{TRIGGER_NAME}'
                   AND tgrelid = 'berth_events'::regclass) THEN
        CREATE TRIGGER {TRIGGER_NAME} AFTER INSERT ON berth_events FOR EACH ROW
            WHEN (starts_with(NEW.topic, 'keypair.') OR starts_with(NEW.topic, 'policy.'))
            EXECUTE FUNCTION berth_limits_epoch_bump();
    END IF;
END $$
"""
"""The trigger on the event store's table (run once the store's tables exist). Created only when
missing, so that a gateway's start takes no lock on the event table once it exists."""

LIMITS_EPOCH = "(SELECT epoch FROM limits_epoch)"
"""The current limits epoch as a scalar subquery, for statements that read it along with their own work."""
