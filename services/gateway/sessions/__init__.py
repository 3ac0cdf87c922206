"""Sessions: queries, mutations and subscriptions of sessions, their enqueue checks, references and ownership."""
