"""What a user action does, one module each: answer, train, gate, evaluate, label.

A task receives the parts it needs (the corpus, the registry, the settings' values), never
the :class:`~fewshot.workspace.Workspace`, and never imports the layers above it.
"""
