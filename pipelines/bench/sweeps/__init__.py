"""A sweep's time, as `make sweep` drives it: where it goes (`timing`, the `clock`'s Tune
callbacks around the sweep's own), on each cluster layout (`scale`), and its MLflow tracking
under many simulated trials (`tracking`, `simulated`). Imports pipelines/sweep/ and the
library; the benches' own runner (`clock.ClockedRunner`) lives here, not in the product."""
