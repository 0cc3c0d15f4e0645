"""Test infrastructure shared by the tests and the benchmarks; the product never imports it."""
