"""Dead letters: list, show, replay and drop what consumers gave up (superadmins)."""
