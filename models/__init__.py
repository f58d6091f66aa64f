"""The data model: typed SQLAlchemy 2 tables. Importing this package registers them all."""

from models.api_key import ApiKey
from models.attachment import Attachment, MessageAttachment
from models.auth_session import AuthSession
from models.base import Base
from models.conversation import Conversation, Message
from models.generation import Generation
from models.model_config import ModelConfig
from models.oauth_identity import OAuthIdentity
from models.plugin_account import PluginAccount
from models.subscription import (
    RedemptionCode,
    Subscription,
    SubscriptionSource,
    SubscriptionStatus,
)
from models.usage_record import UsageRecord
from models.user import User
from models.user_ai_config import UserAIConfig

__all__ = [
    "ApiKey",
    "Attachment",
    "AuthSession",
    "Base",
    "Conversation",
    "Generation",
    "Message",
    "MessageAttachment",
    "ModelConfig",
    "OAuthIdentity",
    "PluginAccount",
    "RedemptionCode",
    "Subscription",
    "SubscriptionSource",
    "SubscriptionStatus",
    "UsageRecord",
    "User",
    "UserAIConfig",
]
