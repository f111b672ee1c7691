"""Rules: the schema users write, the ``when:`` shorthand, and the loader that checks them.

``load_rules(paths, settings) -> RuleSet`` is the entry point; see :mod:`alertd.rules.loader`.
"""

from alertd.rules.loader import RuleSet, load_rules

__all__ = ["RuleSet", "load_rules"]
