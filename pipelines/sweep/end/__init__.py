"""A sweep's end (`conclusion`): who wins, with which score, and whether `best` moves, in
one place (`winner`); the versions it writes (`registration`); the winning configuration's
seeds as one model (`seed_ensemble`); a Pareto search's front (`pareto`); what mattered
(`importance`). Imports anything of the sweep but the driver."""
