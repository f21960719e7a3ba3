"""Answer and report writers conditioned on the causal context and ranked evidence."""
