"""Benchmarks: each module's `main()` prints its figures as JSON lines, always with the
baseline it is compared against measured in the same run (this machine is noisy)."""
