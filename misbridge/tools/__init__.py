"""Field tools: the PIN-pad probe and the journal tool."""
