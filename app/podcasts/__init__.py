"""Podcasts and audiobooks: episodes (and chapters) people listened to, kept apart from
music so that music statistics never count them, with their own dashboard panel."""
