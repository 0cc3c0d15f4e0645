"""Tests of corral.testing."""
