"""The services a sweep can use beyond one machine: a team `mlflow server` with logins, Ray
head and worker nodes with token authentication, and the probes that check both before a
sweep starts."""
