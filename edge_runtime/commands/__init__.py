"""The runtime's sub-commands: ``inspect``, ``run``, ``replay`` (and ``bench``).

Each module's ``configure`` only adds arguments; the heavy work is imported in ``run``.
"""
