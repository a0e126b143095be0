"""Over-the-air firmware updates: bundles (bundle.py), staged rollout (rollout.py) and the
`envnet ota` commands (cli.py). See docs/ota.md."""
