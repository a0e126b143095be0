"""server/review: recomputation of the figures after a reviewer's change (docs/review.md)."""
