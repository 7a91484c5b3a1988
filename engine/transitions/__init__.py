"""Transitions: the :class:`~engine.transitions.engine.Engine` that runs them (its definition half, deploy and
the definition cache, in :mod:`~engine.transitions.definitions`), one
:class:`~engine.transitions.transition.Transition` of one instance (the tasks it creates in
:mod:`~engine.transitions.task_creation`), and the state a process remembers between them."""
