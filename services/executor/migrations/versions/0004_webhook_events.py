"""PSP webhook events received: one row per event id, written in the transaction that acts on the event.

Revision ID: 0004
"""

from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.execute(
        """
        -- The PSP delivers each event at least once; the event id as primary key makes every redelivery
        -- a no-op, because the row and the effect of the event (an execution completed and its outcome
        -- event in the outbox) commit together or not at all.
        CREATE TABLE webhook_events (
            event_id         TEXT        PRIMARY KEY CHECK (event_id <> '' AND length(event_id) <= 255),
            type             TEXT        NOT NULL,
            -- What the event was about: the PSP object and the execution its metadata names ('' if none).
            object_id        TEXT        NOT NULL DEFAULT '',
            execution_id     TEXT        NOT NULL DEFAULT '',
            -- What the executor made of it (service/webhooks.py, Disposition).
            disposition      TEXT        NOT NULL DEFAULT 'received' CHECK (disposition IN (
                'received', 'applied', 'already_final', 'contradicts_recorded', 'not_final', 'unmatched',
                'ignored_type')),
            event_created_at TIMESTAMPTZ NOT NULL,
            received_at      TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        -- The retention sweep deletes the oldest rows.
        CREATE INDEX webhook_events_received ON webhook_events (received_at);
        -- "What did the PSP tell us about this execution?" (operators, reconciliation follow-up).
        CREATE INDEX webhook_events_execution ON webhook_events (execution_id) WHERE execution_id <> '';
        """
    )
