"""`python -m app …` is the same as `audiospective …` (used by `run` for its children)."""

from .cli import main

main()
