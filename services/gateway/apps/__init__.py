"""Apps inside sessions (DESIGN.md §12): a websocket per connection to a port of a session's main kernel."""
