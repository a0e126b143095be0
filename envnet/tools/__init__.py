"""Technician and field tools: provision, flash, console, and the duty-room views."""
