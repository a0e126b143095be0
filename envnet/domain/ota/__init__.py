"""Over-the-air firmware updates: the bundle manifest (manifest.py) and the staged-rollout
policy (rollout.py); server/rollout.py applies the policy, envnet/cli/ota.py is the
`envnet ota` command group. See docs/ota.md."""
