"""Transitions: the :class:`~engine.transitions.engine.Engine` that runs them, one
:class:`~engine.transitions.transition.Transition` of one instance, and the state a process remembers between them."""
