"""Lightning callbacks: sample grids, metrics, ADA p logging."""
