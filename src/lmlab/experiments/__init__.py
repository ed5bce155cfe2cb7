"""Many runs: sweeps (what a sweep is, planning, running, summary), comparing configs, plots and
the experiment report."""
