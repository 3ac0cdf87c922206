"""Every session a keypair sees, through the public API (signed GraphQL ``sessions``, page by page): what the
soak and API benchmarks read their figures from."""

from __future__ import annotations

from services.sdk.client import BerthClient

__all__ = ["last_cursor", "list_sessions"]

PAGE = 500

LIST_SESSIONS = """
query($status: [String!], $first: Int, $after: String, $pos: Int) {
  sessions(status: $status, first: $first, after: $after, afterPosition: $pos) {
    edges { id status statusReason statusHistory } endCursor hasNextPage
  }
}
"""


async def list_sessions(client: BerthClient, statuses: list[str] | None, position: int | None = None,
                        after: str | None = None) -> list[dict]:
    """Every session (in ``statuses`` when given) visible to the keypair, all pages; only those
    created after the cursor ``after`` when given."""
    rows, _ = await _pages(client, statuses, position, after)
    return rows


async def last_cursor(client: BerthClient) -> str | None:
    """The cursor after the newest session visible to the keypair (None: there is none): what a
    later ``list_sessions`` starts from to see only the sessions created since."""
    _, cursor = await _pages(client, None, None, None)
    return cursor


async def _pages(client: BerthClient, statuses: list[str] | None, position: int | None,
                 after: str | None) -> tuple[list[dict], str | None]:
    rows: list[dict] = []
    for _ in range(10_000):  # bounded: 5 million sessions
        page = (await client.execute(LIST_SESSIONS, {"status": statuses, "first": PAGE, "after": after,
                                                     "pos": position}))["sessions"]
        rows += page["edges"]
        after = page["endCursor"] or after
        if not page["hasNextPage"] or not page["endCursor"]:
            break
        position = None
    return rows, after
