"""Pages for visitors who have not signed in: the landing page."""
