"""Shared helpers of the tests: the shared vectors' location."""
import pathlib

VECTORS = pathlib.Path(__file__).resolve().parents[2] / "vectors"
