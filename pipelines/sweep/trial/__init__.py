"""One trial: the Ray Tune trainable it trains in and its contract with the driver
(`trainable`), the Tune callback that records it in MLflow (`callback`), the MLflow writes
themselves (`records`), and the console's lines as trials conclude (`progress`). Imports
the set-up only."""
