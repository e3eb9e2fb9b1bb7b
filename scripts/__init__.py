"""Command-line glue: `mtdqn <command>`; the work itself lives in `agents/` and `envs/`."""
