"""A strict and slow AWS for tests, benchmarks and ``revieee demo``: moto's server behind a
proxy that enforces what real AWS enforces and moto does not (see :mod:`.proxy`)."""

from bot.strict_aws.ecs import Outcome, Program, Run
from bot.strict_aws.proxy import ADMIN_KEY, ROLE_KEY, Authorizer, Denial, Rules, StrictAws
from bot.strict_aws.wire import Answer, Call

__all__ = [
    "ADMIN_KEY",
    "ROLE_KEY",
    "Answer",
    "Authorizer",
    "Call",
    "Denial",
    "Outcome",
    "Program",
    "Rules",
    "Run",
    "StrictAws",
]
