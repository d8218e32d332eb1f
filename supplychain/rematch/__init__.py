"""Rematching: stored SBOMs matched again against a new advisory DB, without pulling."""
