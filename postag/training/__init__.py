"""Training: the loop, read top to bottom in one file (`trainer`), the objective it keeps
the best epoch by (`objective`), and the progress and process resources it reports
(`progress`, `resources`)."""
