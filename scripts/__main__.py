"""`python -m scripts ...` is `mtdqn ...`."""

from mtdqn.scripts.cli import main

main()
