"""The Ray Tune experiments a sweep runs, in order: how one runs or resumes (`stage`), the
search and each extension of it (`search`), the trials held from earlier sweeps or earlier
stages and the plan around them (`held`), the confirmation's new seeds (`confirmation`).
Imports the set-up, the life and the trial."""
