"""Allow ``python -m fewshot``."""

from fewshot.cli import main

main()
