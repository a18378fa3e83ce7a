"""The verbs people type, one parser for every front door, and how each verb is carried out."""

from commands.parser import UsageError, parse
from commands.verbs import Command, Deploy, Help, List, Status, Stop

__all__ = ["Command", "Deploy", "Help", "List", "Status", "Stop", "UsageError", "parse"]
