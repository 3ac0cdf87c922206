"""An epoch row: one number in a one-row table, raised by a trigger function in the transaction of
the change it stands for, and read by each request along with its own work (``keypair_cache``,
``limits_epoch``)."""

from __future__ import annotations

__all__ = ["epoch_row_ddl"]


def epoch_row_ddl(table: str, bump: str) -> str:
    """Returns the DDL of the one-row table ``table`` (its number starting at 0) and of the trigger
    function ``bump()`` that raises it by one."""
    return f"""
CREATE TABLE IF NOT EXISTS {table} (
    one    boolean PRIMARY KEY DEFAULT true CHECK (one),
    epoch  bigint NOT NULL DEFAULT 0
);
INSERT INTO {table} (one) VALUES (true) ON CONFLICT DO NOTHING;
CREATE OR REPLACE FUNCTION {bump}() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN UPDATE {table} SET epoch = epoch + 1; RETURN NULL; END $$"""
