"""The grid runner: a sweep spec's jobs as Ray tasks across a cluster (`run_sweep`), and its report."""
