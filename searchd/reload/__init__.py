"""Hot reload: classify a config change (``plan``), then apply it."""

from searchd.reload.plan import Change, ChangeKind, Plan, classify

__all__ = ["Change", "ChangeKind", "Plan", "classify"]
