"""Stage 4, checks of the ranking: counterfactual retrains and the selection experiment."""
