"""How a query is answered: retrieval (the default), an LLM, or a fine-tuned SetFit model."""
