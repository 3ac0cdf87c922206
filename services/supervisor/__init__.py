"""``berth up``: the embedded default — infrastructure plus every service under one supervisor."""
