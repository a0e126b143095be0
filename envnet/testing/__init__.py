"""Test helpers; the services themselves live in envnet.services."""
