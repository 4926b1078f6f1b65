"""A sweep from its experiment file: the `sweep:` section typed and checked, key by key and
across keys (`settings`), and the job it makes: where its state and Tune's experiments
live, which file runs when none is named, the lock that keeps a second driver away
(`job`). Imports nothing else of the sweep."""
