"""The statements behind claims with leases and fencing tokens (see ``outbox``).

A claim sets ``lease_owner`` (the claiming store's id), ``lease_until`` (the database's
clock plus the lease) and ``claim``: kept when the owner claims its own reference again,
a fresh number from the ``claims`` sequence when the reference passes to another owner.
A result passes the fence (``HELD``) only while owner and token are still the
reference's, writes its attempt (``TRIED``) and its change (``fenced_change``) in the
same statement, and ends the lease.
"""

from __future__ import annotations

CLAIM = (
    "WITH c AS (SELECT reference_id FROM alerts WHERE status = 'pending'"
    " AND next_attempt_at <= $1 AND reference_id <> ALL($2::text[])"
    " AND (lease_until IS NULL OR lease_owner = $3"
    " OR lease_until < extract(epoch FROM clock_timestamp()))"
    " ORDER BY next_attempt_at, reference_id LIMIT $4 FOR UPDATE SKIP LOCKED)"
    " UPDATE alerts a SET lease_owner = $3,"
    " lease_until = extract(epoch FROM clock_timestamp()) + $5,"
    " claim = CASE WHEN a.lease_owner = $3 THEN a.claim ELSE nextval('claims') END"
    " FROM c WHERE a.reference_id = c.reference_id RETURNING a.reference_id, a.service_id,"
    " a.state, a.version, a.attempts, a.delivered_version, a.pending_since,"
    " a.delivered_request, a.claim, a.next_attempt_at"
)
#: A lease renewed from now, for each (reference, token) still this owner's ($1-$3) and
#: not yet ended by a result.
RENEW = (
    "UPDATE alerts a SET lease_until = extract(epoch FROM clock_timestamp()) + $4"
    " FROM unnest($1::text[], $2::bigint[]) AS u(ref, claim)"
    " WHERE a.reference_id = u.ref AND a.claim = u.claim AND a.lease_owner = $3"
    " AND a.lease_until IS NOT NULL RETURNING a.reference_id"
)
#: The fence every result passes: the reference is still this claim's ($1-$3).
HELD = (
    "WITH held AS (SELECT reference_id FROM alerts WHERE reference_id = $1 AND claim = $2"
    " AND lease_owner = $3 FOR UPDATE)"
)
#: The attempt, written only past the fence ($4-$10).
TRIED = (
    ", tried AS (INSERT INTO attempts (reference_id, version, at, outcome, http_status,"
    " error_code, detail, duration_seconds) SELECT reference_id, $4, $5, $6, $7, $8, $9, $10"
    " FROM held)"
)


def fenced_change(sets: str, where: str = "") -> str:
    """The alert's change past the fence, which ends the lease; the count says whether
    the fence let it through."""
    return (
        f", changed AS (UPDATE alerts a SET {sets}, lease_until = NULL FROM held"  # noqa: S608
        f" WHERE a.reference_id = held.reference_id {where}) SELECT count(*) FROM held"
    )


DELIVERED = (
    HELD
    + TRIED
    + fenced_change(
        "delivered_version = greatest(delivered_version, $11), attempts = 0,"
        " status = CASE WHEN version = $11 THEN 'delivered' ELSE 'pending' END,"
        " next_attempt_at = CASE WHEN version = $11 THEN NULL ELSE $12::float8 END,"
        " pending_since = CASE WHEN version = $11 THEN NULL ELSE changed_at END,"
        " last_error_code = NULL, last_error = NULL, last_request = $13,"
        " delivered_request = $13, last_response = $14, updated_at = $12"
    )
)
RETRY = (
    HELD
    + TRIED
    + fenced_change(
        "attempts = a.attempts + 1,"
        " next_attempt_at = CASE WHEN version = $11 THEN $15::float8 ELSE $12::float8 END,"
        " last_error_code = $8, last_error = $9,"
        " last_request = coalesce($13::text, last_request),"
        " last_response = CASE WHEN $13::text IS NULL THEN last_response ELSE $14 END,"
        " updated_at = $12",
        "AND a.status = 'pending'",
    )
)
FAILED = (
    HELD
    + TRIED
    + fenced_change(
        "attempts = a.attempts + 1,"
        " status = CASE WHEN version = $11 THEN 'failed' ELSE 'pending' END,"
        " next_attempt_at = CASE WHEN version = $11 THEN NULL ELSE $12::float8 END,"
        " last_error_code = $8, last_error = $9, last_request = $13,"
        " last_response = $14, updated_at = $12"
    )
)
FILTERED = HELD + fenced_change(
    "status = 'filtered', next_attempt_at = NULL, pending_since = NULL, updated_at = $4",
    "AND a.version = $5",
)
