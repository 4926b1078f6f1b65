"""The `postag` sub-commands other than the sweep: train one run, evaluate and tag with a
registered model, serve it over HTTP; `plots` draws the evaluation's figures."""
