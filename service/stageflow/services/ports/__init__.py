"""Ports: what the use cases need from the outside world, as Protocols named for their role.

One module per side of the outside world (``git``, ``codecs``, ``ledger``, ``events``,
``outside``); every name is re-exported here, so the use cases and the adapters import them
from ``stageflow.services.ports`` without knowing the split.
"""

from stageflow.services.ports.codecs import (
    Codecs,
    FlagEvaluator,
    KustomizationDoc,
    PolicyTools,
    Renderer,
)
from stageflow.services.ports.events import (
    EventLog,
    EvidenceChain,
    Notifications,
    NotificationSender,
)
from stageflow.services.ports.git import (
    Change,
    CommitFacts,
    Committed,
    GitRepo,
    History,
    Outage,
    Workspace,
)
from stageflow.services.ports.ledger import (
    AuditFilter,
    AuditLog,
    Checks,
    Deployments,
    Freezes,
    Holds,
    IdempotencyStore,
    PromotionQuery,
    Promotions,
    Rejections,
    Replicas,
    Restores,
    ServerKeys,
    TokenStore,
    UnitOfWork,
)
from stageflow.services.ports.outside import ControllerNotifier, MetricsSource

__all__ = [
    "AuditFilter",
    "AuditLog",
    "Change",
    "Checks",
    "Codecs",
    "CommitFacts",
    "Committed",
    "ControllerNotifier",
    "Deployments",
    "EventLog",
    "EvidenceChain",
    "FlagEvaluator",
    "Freezes",
    "GitRepo",
    "History",
    "Holds",
    "IdempotencyStore",
    "KustomizationDoc",
    "MetricsSource",
    "NotificationSender",
    "Notifications",
    "Outage",
    "PolicyTools",
    "PromotionQuery",
    "Promotions",
    "Rejections",
    "Renderer",
    "Replicas",
    "Restores",
    "ServerKeys",
    "TokenStore",
    "UnitOfWork",
    "Workspace",
]
