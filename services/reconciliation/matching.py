"""Matching settlement lines against what Settle booked, and classifying what does not agree.

Set-based SQL in one transaction, so a million lines reconcile without any of them in Python's memory.
In order (a line or an item is matched at most once):

Three-way where the data allows: a booked item carries what was ordered (payment service / wallet), what
the executor recorded and what the ledger booked, so a settled line is checked against all three.

1. exact on the PSP reference (pi_/re_/po_ ids);
2. on the merchant reference (our payment order / refund / payout id, echoed in metadata);
3. a tolerant rule: same kind, currency and amount, booked within `window_days` of the line, paired
   1:1 in time order.

One line may stand for many items (1:n): a batch entry naming them (camt.053 TxDtls EndToEndIds) takes
them all before step 1; a batch entry naming only how many (NbOfTxs) takes, after step 3, the open items
of its day when exactly that many add up to it. Its total is then checked against theirs.

A line whose PSP reference already appeared (earlier in the file, or in another batch of a file imported
before) is a DUPLICATE and takes no part in matching; a later file of the same batch is a re-issue.

Mismatch kinds, each with a severity and a suggested action: MISSING_IN_LEDGER, MISSING_IN_SETTLEMENT,
AMOUNT_MISMATCH, CURRENCY_MISMATCH, DUPLICATE, STATUS_MISMATCH, UNEXPECTED_FEE and UNBALANCED (a
statement, batch or payout whose lines do not add up).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# kind: (severity, suggested action)
MISMATCH_KINDS: dict[str, tuple[str, str]] = {
    "MISSING_IN_LEDGER": ("critical", "The PSP moved money Settle did not book: find the payment and book it."),
    "STATUS_MISMATCH": ("critical", "Settle recorded a failure the PSP settled: correct the order and book it."),
    "AMOUNT_MISMATCH": ("high", "Compare the PSP's amount with the booking; post a correcting entry."),
    "CURRENCY_MISMATCH": ("high", "The PSP settled another currency: check FX and correct the booking."),
    "DUPLICATE": ("high", "The PSP settled the same reference twice: claim the duplicate back."),
    "MISSING_IN_SETTLEMENT": ("medium", "Booked but not settled after the expected delay: ask the PSP."),
    "UNEXPECTED_FEE": ("low", "The PSP charged a fee: book it (PostPspFee) or dispute it."),
    "UNBALANCED": ("high", "A statement, batch or payout does not add up: ask the PSP or bank for a correction."),
}
MATCHABLE_KINDS = ("charge", "refund", "payout", "adjustment")
_UUID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
# Items matched to a line one to one, or as one of the many a batch line stands for.
_ALL_MATCHES = (
    "(SELECT file_id, line, item_id FROM run_matches UNION ALL SELECT file_id, line, item_id FROM run_group_matches)"
)


@dataclass(frozen=True, slots=True)
class MatchingRules:
    window_days: int = 3  # the tolerant rule's date window
    settlement_delay_days: int = 2  # booked items younger than this are "in transit", not missing


async def reconcile(
    connection: AsyncConnection, run_id: uuid.UUID, file_ids: list[str], as_of: datetime, rules: MatchingRules
) -> None:
    """Matches the files' lines, then writes the run's mismatches (deterministic ids) into `mismatches`."""
    params = {"files": file_ids, "run": run_id, "as_of": as_of, "window": rules.window_days}
    # A million lines take longer than the services' default statement timeout; this is one batch job.
    await connection.execute(text("SET LOCAL statement_timeout = '30min'"))
    await connection.execute(
        text(
            "CREATE TEMP TABLE run_lines ON COMMIT DROP AS "
            "SELECT l.file_id, l.line, l.kind, l.psp_reference, l.merchant_reference, l.currency, l.gross_minor, "
            "l.fee_minor, l.net_minor, l.occurred_at, "
            # A batch entry (camt.053 Btch/TxDtls) names the items it covers, or at least how many.
            "  coalesce(l.details->>'end_to_end_ids', '') AS group_refs, "
            "  CASE WHEN l.details->>'batch_nb_of_txs' ~ '^[0-9]{1,6}$' "
            "       THEN CAST(l.details->>'batch_nb_of_txs' AS int) END AS group_size, false AS grouped, "
            # A reference seen before is a duplicate: earlier in this file, or in another batch (another
            # settlement day, payout or statement). The same batch in a later file is a re-issue of it.
            "  (l.psp_reference <> '' AND EXISTS (SELECT 1 FROM settlement_lines p JOIN settlement_files pf "
            "     USING (file_id) JOIN settlement_files f ON f.file_id = l.file_id "
            "   WHERE p.psp_reference = l.psp_reference AND p.kind = l.kind "
            "     AND (p.file_id = l.file_id OR p.batch <> l.batch) "
            "     AND (pf.imported_at, p.file_id, p.line) < (f.imported_at, l.file_id, l.line))) AS duplicate "
            "FROM settlement_lines l WHERE l.file_id = ANY(CAST(:files AS text[]))"
        ),
        params,
    )
    await connection.execute(text("CREATE INDEX ON run_lines (file_id, line)"))
    await connection.execute(text("ANALYZE run_lines"))  # temporary tables have no statistics until then
    await connection.execute(
        text(
            "CREATE TEMP TABLE run_matches (file_id text, line int, item_id uuid, rule text, "
            "PRIMARY KEY (file_id, line), UNIQUE (item_id)) ON COMMIT DROP"
        )
    )
    # 1:n: one line standing for many items (a bank batch entry paying many payouts).
    await connection.execute(
        text(
            "CREATE TEMP TABLE run_group_matches (file_id text, line int, item_id uuid PRIMARY KEY, rule text) "
            "ON COMMIT DROP"
        )
    )
    await _match_groups_by_reference(connection)
    # 1. PSP reference.
    await connection.execute(
        text(
            "INSERT INTO run_matches SELECT DISTINCT ON (b.item_id) l.file_id, l.line, b.item_id, 'psp_reference' "
            "FROM run_lines l JOIN booked_items b ON b.psp_reference = l.psp_reference "
            "WHERE l.psp_reference <> '' AND NOT l.duplicate AND NOT l.grouped "
            "AND l.kind = ANY(CAST(:kinds AS text[])) "
            "AND NOT EXISTS (SELECT 1 FROM run_group_matches g WHERE g.item_id = b.item_id) "
            "ORDER BY b.item_id, l.file_id, l.line ON CONFLICT DO NOTHING"
        ),
        {"kinds": list(MATCHABLE_KINDS)},
    )
    # 2. Merchant reference (our id).
    await connection.execute(
        text(
            "INSERT INTO run_matches SELECT DISTINCT ON (b.item_id) l.file_id, l.line, b.item_id, "
            "'merchant_reference' FROM run_lines l "
            "JOIN booked_items b ON l.merchant_reference ~ :uuid AND b.item_id = CAST(l.merchant_reference AS uuid) "
            "WHERE NOT l.duplicate AND NOT l.grouped AND l.kind = ANY(CAST(:kinds AS text[])) "
            "AND NOT EXISTS (SELECT 1 FROM run_matches m WHERE m.file_id = l.file_id AND m.line = l.line) "
            "AND NOT EXISTS (SELECT 1 FROM run_matches m WHERE m.item_id = b.item_id) "
            "AND NOT EXISTS (SELECT 1 FROM run_group_matches g WHERE g.item_id = b.item_id) "
            "ORDER BY b.item_id, l.file_id, l.line ON CONFLICT DO NOTHING"
        ),
        {"kinds": list(MATCHABLE_KINDS), "uuid": _UUID_PATTERN},
    )
    # 3. Tolerant: kind (a bank entry may stand for a payout), currency and amount equal, dates close,
    # paired 1:1 in time order within each (kind, currency, amount).
    await connection.execute(
        text("""
        INSERT INTO run_matches
        WITH open_lines AS (
            SELECT l.*, CASE WHEN l.kind = 'adjustment' THEN 'payout' ELSE l.kind END AS item_kind,
                   row_number() OVER (PARTITION BY CASE WHEN l.kind = 'adjustment' THEN 'payout' ELSE l.kind END,
                                      l.currency, l.gross_minor ORDER BY l.occurred_at, l.file_id, l.line) AS n
            FROM run_lines l
            WHERE NOT l.duplicate AND NOT l.grouped AND l.kind = ANY(CAST(:kinds AS text[]))
              AND l.occurred_at IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM run_matches m WHERE m.file_id = l.file_id AND m.line = l.line)
        ), open_items AS (
            SELECT b.*, row_number() OVER (PARTITION BY b.kind, b.currency, b.amount_minor
                                           ORDER BY b.occurred_at, b.item_id) AS n
            FROM booked_items b
            WHERE b.occurred_at BETWEEN (SELECT min(occurred_at) FROM run_lines) - make_interval(days => :window)
                                    AND (SELECT max(occurred_at) FROM run_lines) + make_interval(days => :window)
              AND NOT EXISTS (SELECT 1 FROM run_matches m WHERE m.item_id = b.item_id)
              AND NOT EXISTS (SELECT 1 FROM run_group_matches g WHERE g.item_id = b.item_id)
              AND NOT EXISTS (SELECT 1 FROM settlement_lines s WHERE s.psp_reference = b.psp_reference
                              AND b.psp_reference <> '')
        )
        SELECT l.file_id, l.line, b.item_id, 'tolerant'
        FROM open_lines l JOIN open_items b
          ON b.kind = l.item_kind AND b.currency = l.currency AND b.amount_minor = l.gross_minor AND b.n = l.n
         AND abs(extract(epoch FROM b.occurred_at - l.occurred_at)) <= :window * 86400
        ON CONFLICT DO NOTHING
        """),
        {**params, "kinds": list(MATCHABLE_KINDS)},
    )
    await _match_groups_by_count_and_sum(connection)
    await connection.execute(text("ANALYZE run_matches"))
    await _classify(connection, params, rules)


async def _match_groups_by_reference(connection: AsyncConnection) -> None:
    """1:n on references: every item a batch line names (EndToEndId of each TxDtls) belongs to that line."""
    await connection.execute(
        text(
            "INSERT INTO run_group_matches SELECT DISTINCT ON (b.item_id) l.file_id, l.line, b.item_id, "
            "'group_reference' FROM run_lines l "
            "CROSS JOIN LATERAL unnest(string_to_array(l.group_refs, ',')) AS r(ref) "
            "JOIN booked_items b ON r.ref ~ :uuid AND b.item_id = CAST(r.ref AS uuid) "
            "WHERE NOT l.duplicate AND l.group_refs LIKE '%,%' AND l.kind = ANY(CAST(:kinds AS text[])) "
            "ORDER BY b.item_id, l.file_id, l.line ON CONFLICT DO NOTHING"
        ),
        {"kinds": list(MATCHABLE_KINDS), "uuid": _UUID_PATTERN},
    )
    await _mark_grouped(connection)


async def _match_groups_by_count_and_sum(connection: AsyncConnection) -> None:
    """n:1 without references: a batch line of N transactions takes the N open items of its kind, currency
    and (UTC) day when their amounts add up to it exactly, and no other batch line of that day competes."""
    await connection.execute(
        text("""
        INSERT INTO run_group_matches
        WITH batches AS (
            SELECT l.file_id, l.line, l.currency, l.gross_minor, l.group_size,
                   CAST(l.occurred_at AT TIME ZONE 'UTC' AS date) AS day,
                   CASE WHEN l.kind = 'adjustment' THEN 'payout' ELSE l.kind END AS item_kind,
                   count(*) OVER (PARTITION BY l.kind, l.currency, CAST(l.occurred_at AT TIME ZONE 'UTC' AS date))
                     AS competing
            FROM run_lines l
            WHERE l.group_size > 1 AND NOT l.duplicate AND NOT l.grouped AND l.occurred_at IS NOT NULL
              AND l.kind = ANY(CAST(:kinds AS text[]))
              AND NOT EXISTS (SELECT 1 FROM run_matches m WHERE m.file_id = l.file_id AND m.line = l.line)
        ), members AS (
            SELECT c.file_id, c.line, b.item_id, c.group_size, c.gross_minor,
                   count(*) OVER (PARTITION BY c.file_id, c.line) AS n,
                   sum(b.amount_minor) OVER (PARTITION BY c.file_id, c.line) AS total
            FROM batches c JOIN booked_items b
              ON b.kind = c.item_kind AND b.currency = c.currency
             AND b.occurred_at >= CAST(c.day AS timestamp) AT TIME ZONE 'UTC'
             AND b.occurred_at < CAST(c.day + 1 AS timestamp) AT TIME ZONE 'UTC'
            WHERE c.competing = 1 AND b.status <> 'failed'
              AND NOT EXISTS (SELECT 1 FROM run_matches m WHERE m.item_id = b.item_id)
              AND NOT EXISTS (SELECT 1 FROM run_group_matches g WHERE g.item_id = b.item_id)
        )
        SELECT file_id, line, item_id, 'group_count_and_sum' FROM members
        WHERE n = group_size AND total = gross_minor
        ON CONFLICT DO NOTHING
        """),
        {"kinds": list(MATCHABLE_KINDS)},
    )
    await _mark_grouped(connection)


async def _mark_grouped(connection: AsyncConnection) -> None:
    await connection.execute(
        text(
            "UPDATE run_lines l SET grouped = true FROM run_group_matches g "
            "WHERE g.file_id = l.file_id AND g.line = l.line AND NOT l.grouped"
        )
    )


async def _classify(connection: AsyncConnection, params: dict[str, object], rules: MatchingRules) -> None:
    insert = (
        "INSERT INTO mismatches (mismatch_id, run_id, kind, severity, suggested_action, file_id, line, item_id, "
        "currency, amount_minor, expected_minor, description) "
    )

    def mismatch(kind: str, select: str) -> str:
        severity, action = MISMATCH_KINDS[kind]
        # Deterministic ids: re-running a run's inputs writes the same rows.
        return (
            insert + f"SELECT CAST(md5(CAST(:run AS text) || ':{kind}:' || coalesce(file_id, '') || ':' "
            "|| coalesce(CAST(line AS text), '') || ':' || coalesce(CAST(item_id AS text), '')) AS uuid), "
            f"CAST(:run AS uuid), '{kind}', '{severity}', '{action.replace(chr(39), chr(39) * 2)}', "
            f"file_id, line, item_id, currency, amount_minor, expected_minor, description FROM ({select}) "
            "AS found(file_id, line, item_id, currency, amount_minor, expected_minor, description) "
            "ON CONFLICT DO NOTHING"
        )

    statements = [
        mismatch(
            "DUPLICATE",
            "SELECT file_id, line, NULL::uuid AS item_id, currency, gross_minor AS amount_minor, "
            "NULL::bigint AS expected_minor, 'reference ' || psp_reference || ' settled again' AS description "
            "FROM run_lines WHERE duplicate",
        ),
        mismatch(
            "MISSING_IN_LEDGER",
            "SELECT l.file_id, l.line, NULL::uuid, l.currency, l.gross_minor, NULL::bigint, "
            "'a ' || l.kind || ' the PSP settled (' || coalesce(nullif(l.psp_reference, ''), 'no reference') "
            "|| ') matches nothing Settle booked' "
            "FROM run_lines l WHERE NOT l.duplicate AND NOT l.grouped AND l.kind IN ('charge', 'refund', 'payout') "
            "AND NOT EXISTS (SELECT 1 FROM run_matches m WHERE m.file_id = l.file_id AND m.line = l.line)",
        ),
        mismatch(
            "MISSING_IN_LEDGER",
            "SELECT m.file_id, m.line, b.item_id, b.currency, b.amount_minor, NULL::bigint, "
            "CASE WHEN b.status = 'ordered' THEN 'Settle ordered ' || b.kind || ' ' || b.item_id "
            "     || ' and the PSP settled it, but the executor recorded no outcome and the ledger never booked it' "
            "ELSE 'the executor recorded ' || b.kind || ' ' || b.item_id || ' but the ledger never booked it' END "
            f"FROM {_ALL_MATCHES} m JOIN booked_items b USING (item_id) WHERE b.status IN ('ordered', 'outcome_only')",
        ),
        mismatch(
            "MISSING_IN_LEDGER",
            "SELECT l.file_id, l.line, NULL::uuid, l.currency, l.gross_minor, NULL::bigint, "
            "'the batch entry names ' || string_agg(r.ref, ', ' ORDER BY r.ref) || ', which Settle never booked' "
            "FROM run_lines l CROSS JOIN LATERAL unnest(string_to_array(l.group_refs, ',')) AS r(ref) "
            "WHERE NOT l.duplicate AND l.group_refs LIKE '%,%' AND r.ref ~ :uuid "
            "AND NOT EXISTS (SELECT 1 FROM booked_items b WHERE b.item_id = CAST(r.ref AS uuid)) "
            "GROUP BY l.file_id, l.line, l.currency, l.gross_minor",
        ),
        mismatch(
            "AMOUNT_MISMATCH",
            "SELECT l.file_id, l.line, NULL::uuid, l.currency, l.gross_minor, sum(b.amount_minor), "
            "'one entry for ' || count(*) || ' items: settled ' || l.gross_minor || ' ' || l.currency "
            "|| ', booked ' || string_agg(b.amount_minor || ' ' || b.currency, ' + ' ORDER BY b.item_id) "
            "FROM run_group_matches g JOIN run_lines l USING (file_id, line) JOIN booked_items b USING (item_id) "
            "WHERE b.status <> 'failed' GROUP BY l.file_id, l.line, l.currency, l.gross_minor "
            "HAVING sum(b.amount_minor) <> l.gross_minor OR bool_or(b.currency <> l.currency)",
        ),
        mismatch(
            "STATUS_MISMATCH",
            "SELECT m.file_id, m.line, b.item_id, b.currency, coalesce(m.gross_minor, b.amount_minor), NULL::bigint, "
            "'Settle recorded ' || b.kind || ' ' || b.item_id || ' as failed; the PSP settled it' "
            "FROM (SELECT m.file_id, m.line, m.item_id, l.gross_minor FROM run_matches m JOIN run_lines l "
            "      ON l.file_id = m.file_id AND l.line = m.line "
            "      UNION ALL SELECT file_id, line, item_id, NULL FROM run_group_matches) m "
            "JOIN booked_items b USING (item_id) WHERE b.status = 'failed'",
        ),
        mismatch(
            "CURRENCY_MISMATCH",
            "SELECT m.file_id, m.line, b.item_id, l.currency, l.gross_minor, b.amount_minor, "
            "'settled in ' || l.currency || ', booked in ' || b.currency "
            "|| coalesce(', ordered in ' || b.ordered_currency, '') "
            "FROM run_matches m JOIN booked_items b USING (item_id) "
            "JOIN run_lines l ON l.file_id = m.file_id AND l.line = m.line "
            "WHERE b.status <> 'failed' AND (l.currency <> b.currency OR b.ordered_currency <> b.currency)",
        ),
        mismatch(
            "AMOUNT_MISMATCH",
            "SELECT m.file_id, m.line, b.item_id, l.currency, l.gross_minor, b.amount_minor, "
            "'settled ' || l.gross_minor || ', booked ' || b.amount_minor "
            "|| coalesce(', ordered ' || b.ordered_minor, '') || ' (minor units)' "
            "FROM run_matches m JOIN booked_items b USING (item_id) "
            "JOIN run_lines l ON l.file_id = m.file_id AND l.line = m.line "
            "WHERE b.status <> 'failed' AND l.currency = b.currency "
            "AND coalesce(b.ordered_currency, b.currency) = b.currency "
            "AND (l.gross_minor <> b.amount_minor OR b.ordered_minor <> b.amount_minor)",
        ),
        mismatch(
            "UNEXPECTED_FEE",
            "SELECT file_id, line, NULL::uuid, currency, fee_minor + CASE WHEN kind = 'fee' THEN -gross_minor "
            "ELSE 0 END, NULL::bigint, 'the PSP charged ' || kind || ' fees' "
            "FROM run_lines WHERE NOT duplicate AND (fee_minor <> 0 OR kind = 'fee')",
        ),
        mismatch(
            "UNBALANCED",
            "SELECT c.file_id, NULL::int AS line, NULL::uuid, c.currency, c.actual_minor, c.expected_minor, "
            "c.scope || ' does not balance' FROM balance_checks c "
            "WHERE c.file_id = ANY(CAST(:files AS text[])) AND c.expected_minor <> c.actual_minor",
        ),
        mismatch(
            "MISSING_IN_SETTLEMENT",
            "SELECT NULL::text AS file_id, NULL::int AS line, b.item_id, b.currency, b.amount_minor, NULL::bigint, "
            "b.kind || ' ' || b.item_id || ' booked ' || to_char(b.occurred_at, 'YYYY-MM-DD') "
            "|| ' was not in any settlement file' "
            "FROM booked_items b "
            "WHERE b.status = 'booked' AND b.occurred_at < CAST(:as_of AS timestamptz) - make_interval(days => :delay) "
            "AND CAST(b.occurred_at AS date) IN "
            "  (SELECT DISTINCT CAST(occurred_at AS date) FROM run_lines WHERE occurred_at IS NOT NULL) "
            f"AND NOT EXISTS (SELECT 1 FROM {_ALL_MATCHES} m WHERE m.item_id = b.item_id) "
            "AND NOT EXISTS (SELECT 1 FROM settlement_lines s WHERE b.psp_reference <> '' "
            "                AND s.psp_reference = b.psp_reference) "
            "AND NOT EXISTS (SELECT 1 FROM settlement_lines s WHERE s.merchant_reference = CAST(b.item_id AS text))",
        ),
    ]
    for statement in statements:
        await connection.execute(
            text(statement), {**params, "delay": rules.settlement_delay_days, "uuid": _UUID_PATTERN}
        )
