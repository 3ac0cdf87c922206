"""``berth token``: a bearer token for GraphiQL and curl."""

from __future__ import annotations

import click

from services.cli.connection import connect_client
from services.cli.running import run_async
from services.cli.output import Output

__all__ = ["token"]


@run_async
async def _issue() -> str:
    async with connect_client() as client:
        return await client.issue_token()


@click.command()
@click.pass_obj
def token(out: Output) -> None:
    """Print a bearer token (valid 12 h) for your keypair, from POST /auth/token.

    \b
    GraphiQL headers pane:  {"Authorization": "Bearer TOKEN"}
    curl:  curl -H "Authorization: Bearer $(berth token)" -H 'Content-Type: application/json' \\
             -d '{"query": "{ sessions { edges { id status } } }"}' http://127.0.0.1:PORT/graphql
    """
    issued = _issue()
    if out.is_json:
        out.json({"token": issued, "authorization": f"Bearer {issued}"})
    else:
        click.echo(issued)
