"""Segment evaluation: after each micro-batch, and as time passes."""
