"""The exploration controller: prompts, LLM backends, reply validation, UCB tree, journal, dispatch."""
