"""A run: its options (config.py, validate.py, presets/), what they build (build.py), and the loop that
trains, evaluates, checkpoints and resumes (runner.py, with its progress lines in progress.py)."""
